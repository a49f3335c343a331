/* `cargo xtask bench programs`' workload: one kind of syscall in a loop.
 * Usage: syscalls KIND FILE COUNT, KIND one of getppid (not traced), fstat
 * (glibc's newfstatat(fd, "", AT_EMPTY_PATH)), stat (a lookup of FILE),
 * open (an open of FILE and its close), dup (a dup of a descriptor of
 * FILE and its close). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s getppid|fstat|stat|open|dup FILE COUNT\n", argv[0]);
        return 2;
    }
    const char *kind = argv[1], *path = argv[2];
    long count = atol(argv[3]);
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    if (!strcmp(kind, "getppid")) {
        for (long i = 0; i < count; i++) getppid();
    } else if (!strcmp(kind, "fstat")) {
        for (long i = 0; i < count; i++) fstat(fd, &st);
    } else if (!strcmp(kind, "stat")) {
        for (long i = 0; i < count; i++) stat(path, &st);
    } else if (!strcmp(kind, "open")) {
        for (long i = 0; i < count; i++) close(open(path, O_RDONLY));
    } else if (!strcmp(kind, "dup")) {
        for (long i = 0; i < count; i++) close(dup(fd));
    } else {
        fprintf(stderr, "unknown kind %s\n", kind);
        return 2;
    }
    return 0;
}
