/* Built with -m32: its syscalls take the compat entry path. */
#include <stdio.h>

int main(void) {
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
