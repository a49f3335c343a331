/* One thread changes the working directory, another then runs `./mycat
 * input.txt` from it: the exec happens in a thread that is not the leader,
 * and its relative paths resolve against a cwd another thread set. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(void) {
    pthread_t thread;
    pthread_create(&thread, NULL, enter_subdirectory, NULL);
    pthread_join(thread, NULL);
    pthread_create(&thread, NULL, run_reader, NULL);
    pthread_join(thread, NULL);
    return 1;
}
