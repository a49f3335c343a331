/* One thread changes the working directory, another then runs `./mycat
 * input.txt` from it: the exec happens in a thread that is not the leader,
 * and its relative paths resolve against a cwd another thread set. With the
 * argument `spin`, the leader does not wait in a system call for the exec
 * but spins in user space, making none at all until the exec kills it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *enter_subdirectory(void *unused) {
    (void)unused;
    if (chdir("sub") != 0) {
        perror("chdir sub");
        exit(1);
    }
    return NULL;
}

static void *run_reader(void *unused) {
    (void)unused;
    char *argv[] = {"mycat", "input.txt", NULL};
    execv("./mycat", argv);
    perror("execv ./mycat");
    exit(1);
}

int main(int argc, char **argv) {
    pthread_t thread;
    pthread_create(&thread, NULL, enter_subdirectory, NULL);
    pthread_join(thread, NULL);
    pthread_create(&thread, NULL, run_reader, NULL);
    if (argc > 1 && strcmp(argv[1], "spin") == 0) {
        for (volatile unsigned long turns = 0;; turns++) {
        }
    }
    pthread_join(thread, NULL);
    return 1;
}
