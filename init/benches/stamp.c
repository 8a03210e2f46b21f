/* stamp FILE: write "PID NANOSECONDS" (CLOCK_REALTIME) to FILE, then become `sleep infinity`.
 * The workload of benches/supervisors.py: every supervisor runs the same thing, and the
 * file says when each start happened. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%d %lld\n", getpid(), (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != n) return 1;
    close(fd);
    rename(tmp, argv[1]);
    execlp("sleep", "sleep", "infinity", (char *)0);
    return 127;
}
