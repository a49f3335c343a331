/* Runs `cat input.txt` through execveat(2), naming cat relative to a
 * descriptor of /usr/bin: the new image is known only from the kernel. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int bin = open("/usr/bin", O_RDONLY | O_DIRECTORY);
    if (bin < 0) {
        perror("open /usr/bin");
        return 1;
    }
    char *argv[] = {"cat", "input.txt", NULL};
    char *envp[] = {NULL};
    syscall(SYS_execveat, bin, "cat", argv, envp, 0);
    perror("execveat");
    return 1;
}
