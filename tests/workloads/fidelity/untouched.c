/* Execs whose path and argv strings sit in pages nothing has touched: they
 * are in a file mapped but never read, so no page table entry exists when the
 * exec starts and only the kernel's own copy faults them in. A vforked child
 * runs `cat first.txt`; then the parent runs `cat second.txt`. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    int fd = open("strings", O_RDONLY);
    if (fd < 0) {
        perror("open strings");
        return 1;
    }
    /* The file holds "/usr/bin/cat\0cat\0first.txt\0second.txt\0". */
    const char *strings = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (strings == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    const char *program = strings, *name = strings + 13, *first = strings + 17, *second = strings + 27;
    pid_t child = vfork();
    if (child == 0) {
        execl(program, name, first, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    execl(program, name, second, (char *)NULL);
    perror("execl");
    return 1;
}
