// Simulated tensornic cluster: n Verilated SoCs with NICs, wired in a ring through link models (one
// model, sim/ring_cluster.py), each node's host byte stream served on its own pseudo-terminal.
// With --pcap PREFIX, every frame node i puts on its GMII wire (SFD stripped, FCS kept) is written to
// PREFIX<i>.pcap (classic pcap, LINKTYPE_ETHERNET, timestamps = cycles × 8 ns).
// Prints "PTY <path>" once per node, in rank order. Runs at full speed while anything is active (a host
// byte queued, a request half received, a NIC busy, a datagram on a link); otherwise sleeps in poll()
// for up to 10 ms and advances --idle-cycles cycles per wake-up. Exits on EOF on stdin or SIGTERM.
// Options: --drop P32 --corrupt P32 (probabilities × 2^32) --seed S --dead MASK --idle-cycles N
//          --pcap PREFIX --host-stall P8 (probability × 256 that, in a cycle, a node's host byte stream
//          into the SoC idles and the one out of it is not taken: random gaps and backpressure).

#include <verilated.h>
#include "Vcluster.h"
#include "cluster_ports.h"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

struct Node {
    CData *rx_valid, *rx_payload, *rx_ready, *tx_valid, *tx_payload, *tx_ready, *receiving;
    CData *wire_en, *wire_data;
    int master = -1, slave = -1;
    std::deque<uint8_t> inq;
    std::vector<uint8_t> outq;
    FILE *pcap = nullptr;
    std::vector<uint8_t> frame;     // bytes of the frame on the wire, preamble and SFD included
    uint64_t frame_start = 0;
    bool rx_offered = false;        // a byte was offered and not yet taken: keep offering it
};

static void put32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }   // pcap in host order (magic says which)

static FILE *open_pcap(const std::string &path) {
    FILE *f = fopen(path.c_str(), "wb");
    if (!f) { perror(path.c_str()); exit(1); }
    put32(f, 0xa1b2c3d4);
    uint16_t version[2] = {2, 4};
    fwrite(version, 2, 2, f);
    put32(f, 0);          // thiszone
    put32(f, 0);          // sigfigs
    put32(f, 65535);      // snaplen
    put32(f, 1);          // LINKTYPE_ETHERNET
    return f;
}

// One frame: the bytes after the SFD (the preamble is 0x55… up to the first 0xD5).
static void write_frame(Node &node) {
    size_t sfd = 0;
    while (sfd < node.frame.size() && node.frame[sfd] != 0xD5) sfd++;
    if (sfd + 1 < node.frame.size()) {
        uint64_t ns = node.frame_start * 8;
        uint32_t len = (uint32_t)(node.frame.size() - sfd - 1);
        put32(node.pcap, (uint32_t)(ns / 1000000000ull));
        put32(node.pcap, (uint32_t)(ns % 1000000000ull / 1000));
        put32(node.pcap, len);
        put32(node.pcap, len);
        fwrite(node.frame.data() + sfd + 1, 1, len, node.pcap);
    }
    node.frame.clear();
}

int main(int argc, char **argv) {
    uint32_t drop = 0, corrupt = 0, seed = 1, dead = 0, host_stall = 0;
    uint64_t idle_cycles = 1000;
    std::string pcap_prefix;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a.rfind("+verilator", 0) == 0) continue;
        if (i + 1 >= argc) { fprintf(stderr, "cluster: %s needs a value\n", a.c_str()); return 2; }
        if (a == "--pcap") { pcap_prefix = argv[++i]; continue; }
        uint64_t v = strtoull(argv[++i], nullptr, 0);
        if (a == "--drop") drop = (uint32_t)v;
        else if (a == "--corrupt") corrupt = (uint32_t)v;
        else if (a == "--seed") seed = (uint32_t)v;
        else if (a == "--dead") dead = (uint32_t)v;
        else if (a == "--idle-cycles") idle_cycles = v;
        else if (a == "--host-stall") host_stall = (uint32_t)v;
        else { fprintf(stderr, "cluster: unknown argument %s\n", a.c_str()); return 2; }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    auto *ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    auto *top = new Vcluster{ctx};
    Node nodes[CLUSTER_NODES];
    BIND_NODES(top, nodes);
    if (!pcap_prefix.empty())
        for (int i = 0; i < CLUSTER_NODES; i++) nodes[i].pcap = open_pcap(pcap_prefix + std::to_string(i) + ".pcap");
    for (auto &node : nodes) {
        node.master = posix_openpt(O_RDWR | O_NOCTTY);
        if (node.master < 0 || grantpt(node.master) || unlockpt(node.master)) { perror("cluster: pty"); return 1; }
        const char *path = ptsname(node.master);
        node.slave = open(path, O_RDWR | O_NOCTTY);     // kept open: the master never reads EIO
        if (node.slave < 0) { perror("cluster: open slave"); return 1; }
        struct termios tio;
        tcgetattr(node.slave, &tio);
        cfmakeraw(&tio);
        tcsetattr(node.slave, TCSANOW, &tio);
        fcntl(node.master, F_SETFL, fcntl(node.master, F_GETFL) | O_NONBLOCK);
        *node.tx_ready = 1;
        *node.rx_valid = 0;
        node.outq.reserve(1 << 16);
    }
    top->drop = drop;
    top->corrupt = corrupt;
    top->seed = seed;
    top->dead = dead;
    top->load_seed = 1;
    top->rst = 1;
    for (int i = 0; i < 4; i++) { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }
    top->rst = 0;
    top->clk = 0; top->eval(); top->clk = 1; top->eval();
    top->load_seed = 0;
    for (auto &node : nodes) printf("PTY %s\n", ptsname(node.master));
    fflush(stdout);

    uint8_t buf[1 << 16];
    uint64_t cycle = 0, last_poll = 0;
    auto fill_in = [&](Node &node) {
        for (;;) {
            ssize_t n = read(node.master, buf, sizeof buf);
            if (n > 0) { node.inq.insert(node.inq.end(), buf, buf + n); continue; }
            break;
        }
    };
    auto flush_out = [&](Node &node) {
        size_t done = 0;
        while (done < node.outq.size()) {
            ssize_t n = write(node.master, node.outq.data() + done, node.outq.size() - done);
            if (n > 0) { done += (size_t)n; continue; }
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        node.outq.erase(node.outq.begin(), node.outq.begin() + (long)done);
    };
    auto parent_gone = [&]() {
        struct pollfd p = {0, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            char c;
            if (read(0, &c, 1) == 0) return true;
        }
        return false;
    };
    uint32_t rng = seed * 2654435761u | 1u;      // xorshift32 for the host-side stalls
    auto stall = [&]() {
        if (!host_stall) return false;
        rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
        return (rng & 0xFF) < host_stall;
    };
    auto step = [&]() {
        top->clk = 0;
        for (auto &node : nodes) {
            // A stream may pause only between bytes: an offered byte stays offered until taken.
            bool offer = !node.inq.empty() && (node.rx_offered || !stall());
            *node.rx_valid = offer ? 1 : 0;
            if (offer) *node.rx_payload = node.inq.front();
            *node.tx_ready = stall() ? 0 : 1;
        }
        top->eval();
        for (auto &node : nodes) {
            node.rx_offered = *node.rx_valid && !*node.rx_ready;
            if (*node.rx_valid && *node.rx_ready) node.inq.pop_front();
            if (*node.tx_valid && *node.tx_ready) node.outq.push_back(*node.tx_payload);
            if (node.pcap) {
                if (*node.wire_en) {
                    if (node.frame.empty()) node.frame_start = cycle;
                    node.frame.push_back(*node.wire_data);
                } else if (!node.frame.empty()) {
                    write_frame(node);
                }
            }
        }
        top->clk = 1;
        top->eval();
        cycle++;
    };

    while (!g_stop) {
        bool quiet = !top->active;
        for (auto &node : nodes) quiet = quiet && node.inq.empty() && node.outq.empty();
        if (quiet) {
            struct pollfd fds[CLUSTER_NODES + 1];
            for (int i = 0; i < CLUSTER_NODES; i++) fds[i] = {nodes[i].master, POLLIN, 0};
            fds[CLUSTER_NODES] = {0, POLLIN, 0};
            for (auto &node : nodes) if (node.pcap) fflush(node.pcap);
            int r = poll(fds, CLUSTER_NODES + 1, 10);
            if (r < 0 && errno != EINTR) break;
            if (fds[CLUSTER_NODES].revents && parent_gone()) break;
            bool input = false;
            for (int i = 0; i < CLUSTER_NODES; i++)
                if (fds[i].revents & POLLIN) { fill_in(nodes[i]); input = input || !nodes[i].inq.empty(); }
            if (!input) {
                for (uint64_t i = 0; i < idle_cycles && !g_stop; i++) step();
                continue;
            }
        }
        if (cycle - last_poll >= 256) {
            last_poll = cycle;
            for (auto &node : nodes) {
                if (node.inq.size() < 4096) fill_in(node);
                if (!node.outq.empty()) flush_out(node);
            }
            if ((cycle & 0xFFFF) < 256 && parent_gone()) break;
        }
        step();
        for (auto &node : nodes) if (node.outq.size() >= 4096) flush_out(node);
    }
    top->final();
    delete top;
    delete ctx;
    for (auto &node : nodes) {
        close(node.slave);
        close(node.master);
        if (node.pcap) { if (!node.frame.empty()) write_frame(node); fclose(node.pcap); }
    }
    return 0;
}
