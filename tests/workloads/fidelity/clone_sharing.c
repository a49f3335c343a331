/* Children made by clone(2) that share with their parent what their flags
 * say, and nothing else: a new mount namespace (a bind mount the parent does
 * not see), a shared table of descriptors (a directory the parent then opens
 * under), a shared working directory (which the parent then opens in).
 * Run in a directory with real/ and view/. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[1 << 16];

static void read_file(int dirfd, const char *path) {
    char buf[64];
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) < 0) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static int in_new_namespace(void *unused) {
    (void)unused;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) || mount("real", "view", NULL, MS_BIND, NULL)) {
        perror("mount");
        return 1;
    }
    read_file(AT_FDCWD, "view/input.txt");
    return 0;
}

static int opens_directory(void *dirfd) {
    *(int *)dirfd = open("real", O_RDONLY | O_DIRECTORY);
    return *(int *)dirfd < 0;
}

static int changes_directory(void *unused) {
    (void)unused;
    return chdir("real") != 0;
}

static void run(int (*child)(void *), int flags, void *arg) {
    int status;
    pid_t pid = clone(child, stack + sizeof stack, flags | SIGCHLD, arg);
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "a child with flags %#x failed\n", flags);
        exit(1);
    }
}

int main(void) {
    run(in_new_namespace, CLONE_NEWNS, NULL);
    read_file(AT_FDCWD, "view/input.txt");
    int dirfd = -1;
    run(opens_directory, CLONE_FILES | CLONE_VM, &dirfd);
    read_file(dirfd, "second.txt");
    run(changes_directory, CLONE_FS, NULL);
    read_file(AT_FDCWD, "third.txt");
    return 0;
}
