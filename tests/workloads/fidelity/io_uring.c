/* File work done only through io_uring (liburing): open and read input.txt,
 * create and write out.tmp, stat meta.txt, rename out.tmp to out.txt, remove
 * gone.txt. One request at a time, each checked. With the argument `sqpoll`,
 * the ring is polled by a kernel thread, which submits the requests in the
 * task's stead (the task makes no syscall for them). With `wait`, the ring
 * is set up first, then the program waits for a file named `go` (an audit
 * attaches meanwhile). */
#define _GNU_SOURCE /* struct statx */
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct io_uring ring;

static int complete(const char *what) {
    struct io_uring_cqe *cqe;
    if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_wait_cqe(&ring, &cqe) < 0) {
        fprintf(stderr, "%s: submit failed\n", what);
        exit(1);
    }
    int result = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (result < 0) {
        fprintf(stderr, "%s: %s\n", what, strerror(-result));
        exit(1);
    }
    return result;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    unsigned flags = strcmp(mode, "sqpoll") == 0 ? IORING_SETUP_SQPOLL : 0;
    if (io_uring_queue_init(8, &ring, flags) < 0) {
        perror("io_uring_queue_init");
        return 1;
    }
    if (strcmp(mode, "wait") == 0) {
        while (access("go", F_OK) != 0) {
            usleep(10000);
        }
    }
    char buffer[256];
    struct statx meta;

    io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, "input.txt", O_RDONLY, 0);
    int input = complete("open input.txt");
    io_uring_prep_read(io_uring_get_sqe(&ring), input, buffer, sizeof buffer, 0);
    int length = complete("read input.txt");
    io_uring_prep_close(io_uring_get_sqe(&ring), input);
    complete("close input.txt");

    io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, "out.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int output = complete("open out.tmp");
    io_uring_prep_write(io_uring_get_sqe(&ring), output, buffer, length, 0);
    complete("write out.tmp");
    io_uring_prep_close(io_uring_get_sqe(&ring), output);
    complete("close out.tmp");

    io_uring_prep_statx(io_uring_get_sqe(&ring), AT_FDCWD, "meta.txt", 0, STATX_BASIC_STATS, &meta);
    complete("statx meta.txt");
    io_uring_prep_renameat(io_uring_get_sqe(&ring), AT_FDCWD, "out.tmp", AT_FDCWD, "out.txt", 0);
    complete("rename out.tmp");
    io_uring_prep_unlinkat(io_uring_get_sqe(&ring), AT_FDCWD, "gone.txt", 0);
    complete("unlink gone.txt");

    io_uring_queue_exit(&ring);
    return 0;
}
