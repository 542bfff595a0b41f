/* The floor for S1: vfork + execve + waitpid in a C loop, no Python at all.
 *
 * usage: floor N PROGRAM [ARG...]
 * Runs PROGRAM N times, one after the other, and prints the duration of
 * each spawn-and-wait in nanoseconds (CLOCK_MONOTONIC), one per line.  Exits
 * 1 if a child did not exit with status 0 (the harness checks it).
 * Compiled by bench/_compare.py at run time (gcc -O2) into a temp dir.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: floor N PROGRAM [ARG...]\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    long long *took = calloc((size_t)n, sizeof *took);
    if (took == NULL)
        return 2;
    for (long i = 0; i < n; i++) {
        long long t0 = now_ns();
        pid_t pid = vfork();
        if (pid == 0) {
            execve(argv[2], argv + 2, environ);
            _exit(127);
        }
        if (pid < 0)
            return 2;
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
        took[i] = now_ns() - t0;
    }
    for (long i = 0; i < n; i++)
        printf("%lld\n", took[i]);
    return 0;
}
