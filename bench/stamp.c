/* A child that exits at a known instant and says when (S3, S5).
 *
 * usage: stamp DEADLINE_NS [CODE]
 * Sleeps until DEADLINE_NS on CLOCK_MONOTONIC (the clock of Python's
 * time.monotonic_ns() on Linux), then writes "PID NOW_NS\n" to fd 1 in one
 * write(2) and _exit(CODE).  NOW_NS is taken right before the exit, so the
 * parent's "noticed at" minus NOW_NS is the lateness of its wait.  Small and
 * static in behaviour, so its start-up does not blur the measurement the way
 * an interpreter would.  Compiled by bench/_compare.py at run time.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    long long deadline = strtoll(argv[1], NULL, 10);
    int code = argc > 2 ? atoi(argv[2]) : 0;
    struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[64];
    int len = snprintf(line, sizeof line, "%d %lld\n", (int)getpid(),
                       now.tv_sec * 1000000000LL + now.tv_nsec);
    if (write(1, line, (size_t)len) != len)
        _exit(2);
    _exit(code);
}
