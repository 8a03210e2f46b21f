/*
 * aither-vmprobe: attempt one operation and report how it ended, for the VM acceptance
 * checks. Prints "ok" or "err ERRNO_NAME" and exits 0 when the operation succeeded, 1 when
 * it failed, 2 on bad usage. Built static so it runs in any domain without libraries.
 *
 *   read PATH | write PATH | rawsock | execmem | execstack | ptrace PID | modload | context
 *   gateway SOCKET   a chat completion through the gateway's Unix socket ("ok" when one came)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int report(int rc) {
    if (rc == 0) {
        puts("ok");
        return 0;
    }
    const char *name = errno == EACCES ? "EACCES" : errno == EPERM ? "EPERM" : errno == ENOENT ? "ENOENT" : strerror(errno);
    printf("err %s\n", name);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *op = argv[1];
    if (!strcmp(op, "read") && argc == 3) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return report(-1);
        char buf[64];
        return report(read(fd, buf, sizeof buf) < 0 ? -1 : 0);
    }
    if (!strcmp(op, "write") && argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) return report(-1);
        return report(write(fd, "x\n", 2) == 2 ? 0 : -1);
    }
    if (!strcmp(op, "rawsock")) return report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) < 0 ? -1 : 0);
    if (!strcmp(op, "execmem")) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return report(p == MAP_FAILED ? -1 : 0);
    }
    if (!strcmp(op, "execstack")) {
        char local[16];
        void *page = (void *)((unsigned long)local & ~4095UL);
        return report(mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
    }
    if (!strcmp(op, "ptrace") && argc == 3) return report(ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0) < 0 ? -1 : 0);
    if (!strcmp(op, "modload")) {
        static const char junk[64];
        return report(syscall(SYS_init_module, junk, sizeof junk, "") < 0 ? -1 : 0);
    }
    if (!strcmp(op, "gateway") && argc == 3) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) return report(-1);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        strncpy(addr.sun_path, argv[2], sizeof addr.sun_path - 1);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return report(-1);
        const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello from an agent\"}],\"max_tokens\":4}";
        char req[512];
        int n = snprintf(req, sizeof req,
                         "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         strlen(body), body);
        if (write(fd, req, n) != n) return report(-1);
        static char resp[65536];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += r;
        resp[got] = 0;
        if (strstr(resp, "\"object\":\"chat.completion\"")) {
            puts("ok");
            return 0;
        }
        char *eol = strstr(resp, "\r\n");
        if (eol) *eol = 0;
        printf("err BADREPLY %s\n", resp);
        return 1;
    }
    if (!strcmp(op, "context")) {
        char buf[256] = {0};
        int fd = open("/proc/self/attr/current", O_RDONLY);
        if (fd < 0 || read(fd, buf, sizeof buf - 1) < 0) return report(-1);
        printf("%s\n", buf);
        return 0;
    }
    return 2;
}
