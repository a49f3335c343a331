/* Built with -m32: its syscalls take the compat entry path. Copies the first
 * line of input.txt to out.txt. With `unlink`, it first removes its own
 * program file (nothing is left to look at); with `wait`, it first waits for
 * a file named `go` (an audit attaches meanwhile). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "unlink") == 0 && unlink(argv[0]) != 0) {
        perror(argv[0]);
        return 1;
    }
    if (strcmp(mode, "wait") == 0) {
        while (access("go", F_OK) != 0) {
            usleep(10000);
        }
    }
    FILE *input = fopen("input.txt", "r");
    char line[64] = "";
    if (input == NULL || fgets(line, sizeof line, input) == NULL) {
        perror("input.txt");
        return 1;
    }
    FILE *output = fopen("out.txt", "w");
    if (output == NULL) {
        perror("out.txt");
        return 1;
    }
    fputs(line, output);
    return fclose(output) != 0;
}
