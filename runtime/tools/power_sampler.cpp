// edgevlm-power-sampler: the battery's current and voltage at a fixed rate, for the device
// benchmark to attribute energy to edgevlm-bench's phases (both use CLOCK_MONOTONIC).
//
//   edgevlm-power-sampler [--root /sys/class/power_supply/battery] [--hz 20] [--duration SECONDS] [--out FILE]
//
// Writes `# edgevlm-power-sampler 1 clock=CLOCK_MONOTONIC root=<root> hz=<hz>`, then one line per
// sample, `t_ns,current_now,voltage_now,status` (the files' text as read, trimmed), each flushed,
// until --duration elapses or SIGTERM/SIGINT (the line being written is finished; exit 0).
// Exit 2: bad arguments; 3: a file unreadable at start.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tool_common.h"

using namespace edgevlm::tools;

namespace {

constexpr const char* kUsage =
    "usage: edgevlm-power-sampler [--root /sys/class/power_supply/battery] [--hz 20] [--duration SECONDS] "
    "[--out FILE]\n";
constexpr const char* kFiles[] = {"current_now", "voltage_now", "status"};

volatile sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

[[noreturn]] void usage(const std::string& problem) {
    std::fprintf(stderr, "error: %s\n%s", problem.c_str(), kUsage);
    std::exit(2);
}

struct Args {
    std::string root = "/sys/class/power_supply/battery", out;
    double hz = 20, duration = -1;  // duration < 0: until a signal
};

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") { std::fputs(kUsage, stdout); std::exit(0); }
        if (i + 1 >= argc) usage(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--root") args.root = value;
        else if (flag == "--hz") args.hz = parse_float(flag, value);
        else if (flag == "--duration") args.duration = parse_float(flag, value);
        else if (flag == "--out") args.out = value;
        else usage("unknown option " + flag);
    }
    if (!(args.hz >= 1 && args.hz <= 10000)) usage("--hz must be between 1 and 10000");
    if (args.duration < 0 && args.duration != -1) usage("--duration must be 0 or more seconds");
    return args;
}

int64_t now_ns() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// The whole file from offset 0 (sysfs attributes are regenerated per read at offset 0), trimmed;
// false on a read error.
bool read_value(int fd, std::string& out) {
    char buffer[256];
    const ssize_t n = pread(fd, buffer, sizeof buffer - 1, 0);
    if (n < 0) return false;
    size_t begin = 0, end = static_cast<size_t>(n);
    while (begin < end && std::strchr(" \t\r\n", buffer[begin])) ++begin;
    while (end > begin && std::strchr(" \t\r\n", buffer[end - 1])) --end;
    out.assign(buffer + begin, end - begin);
    return true;
}

[[noreturn]] void unreadable(const std::string& path, int error) {
    std::fprintf(stderr, "error: cannot read %s: %s; the battery's power_supply folder differs on this device: "
                 "pass --root (ls /sys/class/power_supply)\n", path.c_str(), std::strerror(error));
    std::exit(3);
}

int sample(const Args& args) {
    int fds[3];
    std::string values[3];
    for (int k = 0; k < 3; ++k) {
        const std::string path = args.root + "/" + kFiles[k];
        fds[k] = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fds[k] < 0) unreadable(path, errno);
        if (!read_value(fds[k], values[k])) unreadable(path, errno);
    }
    FILE* out = args.out.empty() ? stdout : std::fopen(args.out.c_str(), "w");
    if (out == nullptr) {
        std::fprintf(stderr, "error: cannot write %s: %s\n", args.out.c_str(), std::strerror(errno));
        return 1;
    }
    struct sigaction action {};
    action.sa_handler = on_signal;  // no SA_RESTART: a signal ends the sleep at once
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);

    std::fprintf(out, "# edgevlm-power-sampler 1 clock=CLOCK_MONOTONIC root=%s hz=%g\n", args.root.c_str(), args.hz);
    std::fflush(out);
    const int64_t period = static_cast<int64_t>(1e9 / args.hz);
    const int64_t start = now_ns();
    const int64_t end = args.duration < 0 ? INT64_MAX : start + static_cast<int64_t>(args.duration * 1e9);
    bool warned = false;
    for (int64_t deadline = start; !stop_requested && deadline < end; deadline += period) {
        timespec at{static_cast<time_t>(deadline / 1000000000), static_cast<long>(deadline % 1000000000)};
        while (!stop_requested && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {}
        if (stop_requested) break;
        const int64_t t = now_ns();
        for (int k = 0; k < 3; ++k) {
            if (read_value(fds[k], values[k])) continue;
            values[k].clear();  // an empty field: this sample of that file failed
            if (!warned) std::fprintf(stderr, "warning: reading %s/%s failed: %s\n", args.root.c_str(), kFiles[k],
                                      std::strerror(errno));
            warned = true;
        }
        std::fprintf(out, "%lld,%s,%s,%s\n", static_cast<long long>(t), values[0].c_str(), values[1].c_str(),
                     values[2].c_str());
        std::fflush(out);
        if (t - deadline > period) deadline = t;  // fell behind: resume from now rather than burst
    }
    for (int fd : fds) close(fd);
    if (out != stdout) std::fclose(out);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return sample(parse(argc, argv));
    } catch (const UsageError& e) {
        usage(e.what());
    }
}
