/* The pidfd toolkit: the few pidfd syscalls Python's os module lacks.
 *
 * CPython has pidfd_open, pidfd_send_signal and waitid(P_PIDFD) (3.9) and
 * setns (3.12 only); pidfd_getfd, process_madvise and glibc's pidfd_getpid
 * it has not.  PyPy has none of the first three: pidfd_open and
 * pidfd_send_signal are here for it (_posix.py; waitid is _lifecycle.c's).
 * These run in the parent, never in a child: ordinary C, no
 * async-signal-safety contract.
 *
 * Every function returns its result or -errno (never -1 + errno), so the
 * caller needs no errno transport and the answer is per call, per thread.
 * The syscalls go through syscall(2) rather than glibc's wrappers, which
 * appeared only in glibc 2.36, so one build serves older glibc too.
 */
#include "_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* Numbers from 424 up are shared by every architecture but alpha (which
 * adds 110); its headers have had them since they were assigned. */
#if !defined(__NR_pidfd_getfd) && !defined(__alpha__)
#define __NR_pidfd_getfd 438
#endif
#if !defined(__NR_process_madvise) && !defined(__alpha__)
#define __NR_process_madvise 440
#endif

/* The kernel's UIO_MAXIOV: more vectors in one call is EINVAL anyway. */
#define PIDPROC_MAX_IOV 1024

int pidproc_pidfd_open(int pid, unsigned int flags)
{
    long fd = syscall(__NR_pidfd_open, pid, flags);
    return fd < 0 ? -errno : (int)fd;
}

int pidproc_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    /* No siginfo: os's pidfd_send_signal accepts only None for it too. */
    return syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, flags) < 0 ? -errno : 0;
}

int pidproc_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
    long fd = syscall(__NR_pidfd_getfd, pidfd, targetfd, flags);
    return fd < 0 ? -errno : (int)fd;
}

long long pidproc_process_madvise(int pidfd, const unsigned long *addrs, const size_t *lens,
                                  size_t n, int advice, unsigned int flags)
{
    struct iovec iov[PIDPROC_MAX_IOV];
    if (n > PIDPROC_MAX_IOV)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = (void *)addrs[i];
        iov[i].iov_len = lens[i];
    }
    long done = syscall(__NR_process_madvise, pidfd, iov, n, advice, flags);
    return done < 0 ? -errno : done;
}

int pidproc_setns(int fd, int nstype)
{
    return setns(fd, nstype) < 0 ? -errno : 0;
}

void *pidproc_glibc_fn(struct pidproc_glibc_fn *f)
{
    /* "looked" is published after the pointer: whoever sees it set sees the
     * pointer too. */
    if (!__atomic_load_n(&f->looked, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&f->fn, dlsym(RTLD_DEFAULT, f->name), __ATOMIC_RELAXED);
        __atomic_store_n(&f->looked, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&f->fn, __ATOMIC_RELAXED);
}

pidproc_pidfd_getpid_fn pidproc_glibc_pidfd_getpid(void)
{
    static struct pidproc_glibc_fn getpid_fn = {"pidfd_getpid", NULL, 0};   /* glibc 2.39+ */
    return (pidproc_pidfd_getpid_fn)pidproc_glibc_fn(&getpid_fn);
}

int pidproc_pidfd_getpid(int pidfd)
{
    pidproc_pidfd_getpid_fn fn = pidproc_glibc_pidfd_getpid();
    if (fn == NULL)
        return -ENOSYS;
    int pid = fn(pidfd);
    return pid < 0 ? -errno : pid;
}
