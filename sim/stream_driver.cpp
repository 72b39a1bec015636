// Native Verilator driver for one input stream and one output stream of an Amaranth component.
//
// It replaces a cocotb bench where the vector count is large (cocotb crosses into Python every cycle).
// The design-specific part is the generated header "stream_ports.h" (written by sim/stream_runner.py):
//
//   DUT                      the Verilated class (e.g. Vfp32_add)
//   IN_VALID/IN_READY/IN_PAYLOAD, OUT_VALID/OUT_READY/OUT_PAYLOAD   port members
//   IN_WORDS, OUT_WORDS      32-bit words per payload in the files
//   set_static_inputs(DUT*)  constant values for any other inputs
//
// Files: raw little-endian uint32 words, IN_WORDS (OUT_WORDS) per transfer, in order.
//
// Behaviour, from a seeded xorshift generator:
// - source: when it holds no item it stays idle with probability --idle, else presents the next item and
//   holds valid and payload until the item is taken (the stream rules);
// - sink: ready is low with probability --stall each cycle, and with probability --long-stall a stall of
//   16..255 cycles begins;
// - checks the output side of the stream rules every cycle: once o.valid is high it stays high, with the
//   same payload, until a transfer;
// - stops when every input has been taken and --expect outputs have arrived, then runs --drain more cycles
//   with ready high and counts any further outputs (there must be none).
// Prints one JSON line: cycles, counts, protocol errors and the first error message.

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "stream_ports.h"

namespace {

uint64_t rng_state = 0x9E3779B97F4A7C15ull;

uint64_t next_random() {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

bool chance(double p) {
    if (p <= 0.0) return false;
    return (next_random() >> 11) * (1.0 / 9007199254740992.0) < p;
}

// Payload <-> words, for every storage type Verilator uses for a port.
void put(CData& port, const uint32_t* w) { port = static_cast<CData>(w[0]); }
void put(SData& port, const uint32_t* w) { port = static_cast<SData>(w[0]); }
void put(IData& port, const uint32_t* w) { port = w[0]; }
void put(QData& port, const uint32_t* w) { port = static_cast<QData>(w[0]) | (static_cast<QData>(w[1]) << 32); }
template <std::size_t N>
void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}

void get(const CData& port, uint32_t* w) { w[0] = port; }
void get(const SData& port, uint32_t* w) { w[0] = port; }
void get(const IData& port, uint32_t* w) { w[0] = port; }
void get(const QData& port, uint32_t* w) {
    w[0] = static_cast<uint32_t>(port);
    w[1] = static_cast<uint32_t>(port >> 32);
}
template <std::size_t N>
void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

struct Options {
    std::string in_path, out_path;
    uint64_t expect = 0;
    uint64_t seed = 1;
    double idle = 0.0, stall = 0.0, long_stall = 0.0;
    uint64_t drain = 200;
    uint64_t max_cycles = 0;  // 0: 20 × (inputs + expected outputs) + 100000
};

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr,
                 "stream driver: %s\nusage: driver --in FILE --out FILE --expect N [--seed S] [--idle P] "
                 "[--stall P] [--long-stall P] [--drain CYCLES] [--max-cycles N]\n",
                 message);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
        const char* value = argv[++i];
        if (arg == "--in") o.in_path = value;
        else if (arg == "--out") o.out_path = value;
        else if (arg == "--expect") o.expect = std::strtoull(value, nullptr, 0);
        else if (arg == "--seed") o.seed = std::strtoull(value, nullptr, 0);
        else if (arg == "--idle") o.idle = std::atof(value);
        else if (arg == "--stall") o.stall = std::atof(value);
        else if (arg == "--long-stall") o.long_stall = std::atof(value);
        else if (arg == "--drain") o.drain = std::strtoull(value, nullptr, 0);
        else if (arg == "--max-cycles") o.max_cycles = std::strtoull(value, nullptr, 0);
        else usage(("unknown option " + arg).c_str());
    }
    if (o.in_path.empty() || o.out_path.empty()) usage("--in and --out are required");
    return o;
}

std::vector<uint32_t> read_words(const std::string& path) {
    std::vector<uint32_t> words;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) usage(("cannot open " + path).c_str());
    uint32_t buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, sizeof(uint32_t), 4096, f)) > 0) words.insert(words.end(), buffer, buffer + n);
    std::fclose(f);
    return words;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    rng_state ^= opt.seed * 0xD1B54A32D192ED03ull;
    for (int i = 0; i < 4; ++i) next_random();

    std::vector<uint32_t> in_words = read_words(opt.in_path);
    if (in_words.size() % IN_WORDS) usage("input file is not a whole number of payloads");
    const uint64_t n_in = in_words.size() / IN_WORDS;
    const uint64_t max_cycles = opt.max_cycles ? opt.max_cycles : 20 * (n_in + opt.expect) + 100000;

    FILE* out = std::fopen(opt.out_path.c_str(), "wb");
    if (!out) usage(("cannot create " + opt.out_path).c_str());

    VerilatedContext context;
    DUT* top = new DUT{&context};
    set_static_inputs(top);
    top->clk = 0;
    top->IN_VALID = 0;
    top->OUT_READY = 0;
    top->rst = 1;
    for (int i = 0; i < 4; ++i) {
        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
    }
    top->rst = 0;
    top->eval();

    uint64_t cycles = 0, taken = 0, received = 0, extra = 0, protocol_errors = 0;
    uint64_t long_stall_left = 0, drain_left = 0, busy_cycles = 0, first_out_cycle = 0, last_out_cycle = 0;
    bool presenting = false, draining = false, held = false, timed_out = false;
    uint32_t out_buf[OUT_WORDS], held_buf[OUT_WORDS];
    std::string first_error;

    while (true) {
        // Source: pick up the next item unless idling; an item once presented stays until taken.
        if (!presenting && taken < n_in && (draining || !chance(opt.idle))) presenting = true;
        top->IN_VALID = presenting ? 1 : 0;
        if (presenting) put(top->IN_PAYLOAD, &in_words[taken * IN_WORDS]);
        // Sink.
        bool ready;
        if (draining) {
            ready = true;
        } else if (long_stall_left) {
            --long_stall_left;
            ready = false;
        } else if (chance(opt.long_stall)) {
            long_stall_left = 16 + (next_random() % 240);
            ready = false;
        } else {
            ready = !chance(opt.stall);
        }
        top->OUT_READY = ready ? 1 : 0;
        top->eval();

        const bool in_transfer = presenting && top->IN_READY;
        const bool out_valid = top->OUT_VALID;
        get(top->OUT_PAYLOAD, out_buf);
        if (held) {
            const char* error = nullptr;
            if (!out_valid) error = "o.valid fell before a transfer";
            else if (std::memcmp(out_buf, held_buf, sizeof out_buf)) error = "o.payload changed before a transfer";
            if (error) {
                ++protocol_errors;
                if (first_error.empty()) first_error = std::string(error) + " at cycle " + std::to_string(cycles);
            }
        }
        if (out_valid && ready) {
            if (draining && received >= opt.expect) {
                ++extra;
            } else {
                std::fwrite(out_buf, sizeof(uint32_t), OUT_WORDS, out);
                if (!received) first_out_cycle = cycles;
                last_out_cycle = cycles;
                ++received;
            }
        }
        held = out_valid && !ready;
        if (held) std::memcpy(held_buf, out_buf, sizeof out_buf);

        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
        ++cycles;
        if (in_transfer) {
            ++taken;
            presenting = false;
        }

        if (!draining && taken == n_in && received >= opt.expect) {
            draining = true;
            drain_left = opt.drain;
            busy_cycles = cycles;
        }
        if (draining) {
            if (drain_left == 0) break;
            --drain_left;
        }
        if (cycles >= max_cycles) {
            timed_out = true;
            busy_cycles = cycles;
            break;
        }
    }
    std::fclose(out);
    top->final();
    delete top;

    std::printf("{\"cycles\": %" PRIu64 ", \"busy_cycles\": %" PRIu64 ", \"inputs\": %" PRIu64 ", \"taken\": %" PRIu64
                ", \"received\": %" PRIu64 ", \"expected\": %" PRIu64 ", \"extra\": %" PRIu64
                ", \"protocol_errors\": %" PRIu64 ", \"first_out_cycle\": %" PRIu64
                ", \"last_out_cycle\": %" PRIu64 ", \"timed_out\": %s, \"first_error\": \"%s\"}\n",
                cycles, busy_cycles, n_in, taken, received, opt.expect, extra, protocol_errors, first_out_cycle,
                last_out_cycle, timed_out ? "true" : "false", first_error.c_str());
    return 0;
}
