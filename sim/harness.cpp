// Simulated tensornic device: the Verilated SoC behind a pseudo-terminal.
//
// The host opens the printed pty path with pyserial exactly as it opens a board's USB-UART.
// Modes:
//   --mode stream  bytes go straight into the bridge's byte stream (fast; the default)
//   --mode uart    bytes are serialized onto the SoC's uart_rx pin and deserialized from uart_tx by
//                  this harness's own UART model, so the whole bit-level path of the gateware runs.
//                  Like a real USB-UART cable it runs at the line rate the host set on the port
//                  (the pty's termios speed; --clock-hz converts it to cycles per bit), starting at
//                  --divisor-q4 (cycles per bit × 16) until the host sets one. A host at the wrong
//                  baud therefore sees garbage, exactly as with a board.
// The simulated clock runs while the device has work; when the link is idle and no byte is pending
// the harness sleeps in poll() (10 ms at a time) and advances --idle-cycles cycles per wake-up.
// The harness exits when its stdin reaches EOF (the parent process closed it, exited or died; checked
// at every wake-up and every 4096 busy cycles) or on SIGTERM.

#include <verilated.h>
#include "Vsoc.h"

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
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

struct Options {
    bool uart = false;
    uint32_t divisor_q4 = 16 * 16;
    uint64_t idle_cycles = 1000;
    uint64_t clock_hz = 48000000;
};

// The line rate the host set on the pty: a standard Bxxx constant, or (BOTHER) the termios2 speed.
struct termios2_compat {
    tcflag_t c_iflag, c_oflag, c_cflag, c_lflag;
    cc_t c_line;
    cc_t c_cc[19];
    speed_t c_ispeed, c_ospeed;
};

static long line_baud(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) return -1;
    static const struct { speed_t code; long baud; } table[] = {
        {B9600, 9600}, {B19200, 19200}, {B38400, 38400}, {B57600, 57600}, {B115200, 115200},
        {B230400, 230400}, {B460800, 460800}, {B500000, 500000}, {B576000, 576000},
        {B921600, 921600}, {B1000000, 1000000}, {B1152000, 1152000}, {B1500000, 1500000},
        {B2000000, 2000000}, {B2500000, 2500000}, {B3000000, 3000000}, {B3500000, 3500000},
        {B4000000, 4000000}};
    speed_t code = cfgetospeed(&t);
    for (auto &e : table) if (e.code == code) return e.baud;
#ifdef BOTHER
    if (code == BOTHER) {
        struct termios2_compat t2;
        if (ioctl(fd, _IOR('T', 0x2A, struct termios2_compat), &t2) == 0) return (long)t2.c_ospeed;
    }
#endif
    return -1;
}

static Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) { fprintf(stderr, "harness: %s needs a value\n", a.c_str()); exit(2); }
            return argv[++i];
        };
        if (a == "--mode") {
            std::string m = next();
            if (m == "uart") o.uart = true;
            else if (m == "stream") o.uart = false;
            else { fprintf(stderr, "harness: unknown mode %s\n", m.c_str()); exit(2); }
        } else if (a == "--divisor-q4") {
            o.divisor_q4 = (uint32_t)strtoul(next(), nullptr, 0);
        } else if (a == "--clock-hz") {
            o.clock_hz = strtoull(next(), nullptr, 0);
        } else if (a == "--idle-cycles") {
            o.idle_cycles = strtoull(next(), nullptr, 0);
        } else if (a.rfind("+verilator", 0) == 0) {
            // Verilator's own plusargs
        } else {
            fprintf(stderr, "harness: unknown argument %s\n", a.c_str());
            exit(2);
        }
    }
    if (o.divisor_q4 < 4 * 16) { fprintf(stderr, "harness: divisor below 4 cycles per bit\n"); exit(2); }
    return o;
}

// Bit-level UART model (8N1, LSB first) with a fractional divisor, independent of the gateware's.
struct UartSerializer {           // drives the SoC's uart_rx
    uint32_t div;                 // cycles per bit × 16
    int bit = -1;                 // -1 idle, 0 start, 1..8 data, 9 stop
    uint8_t byte = 0;
    uint32_t acc = 0;
    bool line = true;
    bool busy() const { return bit >= 0; }
    void start(uint8_t b) { byte = b; bit = 0; acc = 0; line = false; }
    void tick() {                 // one clock cycle
        if (bit < 0) return;
        acc += 16;
        if (acc >= div) {
            acc -= div;
            bit++;
            if (bit <= 8) line = (byte >> (bit - 1)) & 1;
            else if (bit == 9) line = true;
            else { bit = -1; line = true; }
        }
    }
};

struct UartDeserializer {         // samples the SoC's uart_tx
    uint32_t div;
    int bit = -1;                 // -1 idle, 0 start, 1..8 data, 9 stop
    uint32_t acc = 0;
    uint8_t byte = 0;
    bool prev = true;
    bool busy() const { return bit >= 0; }
    // Returns 1 with *out set when a byte completes, -1 on a framing error, 0 otherwise.
    int tick(bool line, uint8_t *out) {
        int result = 0;
        if (bit < 0) {
            if (prev && !line) { bit = 0; acc = div / 2; }  // first sample half a bit from the edge
        } else {
            acc += 16;
            if (acc >= div) {
                acc -= div;
                if (bit == 0) {
                    if (line) bit = -2;                   // glitch, not a start bit
                } else if (bit <= 8) {
                    byte = (uint8_t)((byte >> 1) | (line ? 0x80 : 0));
                } else {
                    if (line) { *out = byte; result = 1; } else result = -1;
                    bit = -2;
                }
                bit++;
                if (bit == -1) acc = 0;
            }
        }
        prev = line;
        return result;
    }
};

static int64_t now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    Options opt = parse(argc, argv);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) { perror("harness: pty"); return 1; }
    const char *slave_path = ptsname(master);
    // Keep the slave open ourselves: the master then never reads EIO while the host reopens the port.
    int slave = open(slave_path, O_RDWR | O_NOCTTY);
    if (slave < 0) { perror("harness: open slave"); return 1; }
    struct termios tio;
    tcgetattr(slave, &tio);
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);

    auto *ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    auto *top = new Vsoc{ctx};
    top->use_byte_port = opt.uart ? 0 : 1;
    top->host_tx___05Fready = 1;
    top->uart_rx = 1;
    top->rst = 1;
    for (int i = 0; i < 4; i++) { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }
    top->rst = 0;

    printf("PTY %s\n", slave_path);
    fflush(stdout);

    UartSerializer ser{opt.divisor_q4};
    UartDeserializer des{opt.divisor_q4};
    std::deque<uint8_t> inq;
    std::vector<uint8_t> outq;
    outq.reserve(1 << 16);
    uint8_t buf[1 << 16];
    uint64_t cycle = 0, last_poll = 0;
    uint64_t framing_errors = 0;

    auto flush_out = [&]() {
        size_t done = 0;
        while (done < outq.size()) {
            ssize_t n = write(master, outq.data() + done, outq.size() - done);
            if (n > 0) { done += (size_t)n; continue; }
            if (n < 0 && errno == EINTR) continue;
            break;  // EAGAIN: the host is not reading; keep the rest
        }
        outq.erase(outq.begin(), outq.begin() + (long)done);
    };
    auto fill_in = [&]() {
        for (;;) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0) { inq.insert(inq.end(), buf, buf + n); continue; }
            break;
        }
    };
    long current_baud = -1;   // follow whatever the port is set to, from the first look on
    auto follow_line_rate = [&]() {
        if (!opt.uart || ser.busy() || des.busy()) return;
        long baud = line_baud(slave);
        if (baud <= 0 || baud == current_baud) return;
        current_baud = baud;
        uint64_t div = (opt.clock_hz * 16 + (uint64_t)baud / 2) / (uint64_t)baud;
        if (div < 4 * 16) div = 4 * 16;
        ser.div = des.div = (uint32_t)div;
    };
    auto parent_gone = [&]() {
        struct pollfd p = {0, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            char c;
            ssize_t n = read(0, &c, 1);
            if (n == 0) return true;              // EOF: the parent closed our stdin or died
        }
        return false;
    };

    // The harness sleeps when nothing can happen without input: the link is idle, or a partial frame
    // has waited WAIT_LIMIT_MS of wall time (it normally times out well before; with the timeout off it
    // would otherwise spin forever).
    const int64_t WAIT_LIMIT_MS = 500;
    int64_t last_input_ms = now_ms();
    while (!g_stop) {
        bool line_busy = ser.busy() || des.busy();
        bool waiting_long = top->link_receiving && now_ms() - last_input_ms > WAIT_LIMIT_MS;
        if (inq.empty() && outq.empty() && !line_busy && (top->link_idle || waiting_long)) {
            struct pollfd fds[2] = {{master, POLLIN, 0}, {0, POLLIN, 0}};
            int r = poll(fds, 2, 10);
            if (r < 0 && errno != EINTR) break;
            if (fds[1].revents && parent_gone()) break;
            if (fds[0].revents & POLLIN) fill_in();
            follow_line_rate();
            if (inq.empty()) {
                // Let simulated time pass at a small bounded rate so counters and timeouts still move.
                for (uint64_t i = 0; i < opt.idle_cycles && !g_stop; i++) {
                    top->clk = 0; top->eval(); top->clk = 1; top->eval(); cycle++;
                }
                continue;
            }
        }
        if (cycle - last_poll >= 256 || (inq.empty() && cycle - last_poll >= 16)) {
            last_poll = cycle;
            size_t before = inq.size();
            if (before < 4096) fill_in();
            if (inq.size() != before) last_input_ms = now_ms();
            if (!outq.empty()) flush_out();
            if ((cycle & 0xFFF) < 256) {
                follow_line_rate();
                if (parent_gone()) break;
            }
        }
        top->clk = 0;
        if (opt.uart) {
            if (!ser.busy() && !inq.empty()) { ser.start(inq.front()); inq.pop_front(); }
            top->uart_rx = ser.line;
            top->eval();
            uint8_t b;
            int got = des.tick(top->uart_tx, &b);
            if (got > 0) outq.push_back(b);
            else if (got < 0) framing_errors++;
            ser.tick();
        } else {
            top->host_rx___05Fvalid = inq.empty() ? 0 : 1;
            if (!inq.empty()) top->host_rx___05Fpayload = inq.front();
            top->eval();
            if (top->host_rx___05Fvalid && top->host_rx___05Fready) inq.pop_front();
            if (top->host_tx___05Fvalid) outq.push_back(top->host_tx___05Fpayload);
        }
        top->clk = 1;
        top->eval();
        cycle++;
        if (outq.size() >= 4096) flush_out();
    }
    if (framing_errors) fprintf(stderr, "harness: %llu framing errors on uart_tx\n",
                                (unsigned long long)framing_errors);
    top->final();
    delete top;
    delete ctx;
    close(slave);
    close(master);
    return 0;
}
