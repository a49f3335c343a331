/*
 * The `storm` workload of `cargo xtask bench`: a burst of file opens from
 * several threads, the syscall pattern that costs a tracer the most per unit of
 * work (every open is an event, and the work between them is tiny).
 *
 * Usage: storm DIR NFILES THREADS OPENS_PER_THREAD [churn|relative|distinct]
 *
 * DIR holds NFILES files named f00000, f00001, ... (the harness prepares them;
 * storm creates nothing). Each thread opens, fstats and closes files by their
 * absolute path OPENS_PER_THREAD times, cycling through the files from its own
 * starting point so the threads do not walk in step. With `churn`, each
 * iteration is open, read, close and stat by path instead (the loop of a
 * program that keeps rereading its inputs). With `relative`, the storm's
 * iteration names the file relative to DIR, its working directory: each open
 * is an event (facts about relative paths are never deduplicated), the
 * sustained stream that shows what an audit loses and keeps in memory. With
 * `distinct`, each thread stats files of its own by absolute path, each once
 * (thread t the OPENS_PER_THREAD files from t × OPENS_PER_THREAD; NFILES must
 * hold them all): as many paths as stats, what an audit keeps a path. Prints
 * nothing unless something fails (then exit status 1).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;
static long nfiles, threads, opens;
static int churn, relative, distinct;

static long parse_count(const char *text, const char *what) {
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value <= 0) {
        fprintf(stderr, "storm: %s must be a positive number, not '%s'\n", what, text);
        exit(2);
    }
    return value;
}

static void *worker(void *arg) {
    long id = (long)arg;
    char path[4096];
    char buffer[256];
    struct stat st;
    for (long i = 0; i < opens; i++) {
        long file = distinct ? id * opens + i : (id * nfiles / threads + i) % nfiles;
        if (relative) {
            snprintf(path, sizeof path, "f%05ld", file);
        } else {
            snprintf(path, sizeof path, "%s/f%05ld", dir, file);
        }
        if (distinct) {
            if (stat(path, &st) != 0) {
                perror(path);
                exit(1);
            }
            continue;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(path);
            exit(1);
        }
        int failed = churn ? read(fd, buffer, sizeof buffer) < 0 || close(fd) != 0 || stat(path, &st) != 0
                           : fstat(fd, &st) != 0 || close(fd) != 0;
        if (failed) {
            perror(path);
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    churn = argc == 6 && strcmp(argv[5], "churn") == 0;
    relative = argc == 6 && strcmp(argv[5], "relative") == 0;
    distinct = argc == 6 && strcmp(argv[5], "distinct") == 0;
    if (argc != 5 && !churn && !relative && !distinct) {
        fprintf(stderr, "usage: storm DIR NFILES THREADS OPENS_PER_THREAD [churn|relative|distinct]\n");
        return 2;
    }
    dir = argv[1];
    if (relative && chdir(dir) != 0) {
        perror(dir);
        return 1;
    }
    nfiles = parse_count(argv[2], "NFILES");
    threads = parse_count(argv[3], "THREADS");
    opens = parse_count(argv[4], "OPENS_PER_THREAD");
    if (distinct && threads * opens > nfiles) {
        fprintf(stderr, "storm: distinct needs THREADS × OPENS_PER_THREAD files, not %ld\n", nfiles);
        return 2;
    }
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (ids == NULL) {
        perror("calloc");
        return 1;
    }
    for (long t = 0; t < threads; t++) {
        if (pthread_create(&ids[t], NULL, worker, (void *)t) != 0) {
            fprintf(stderr, "storm: cannot start thread %ld\n", t);
            return 1;
        }
    }
    for (long t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
    }
    free(ids);
    return 0;
}
