/* Declarations shared by the C files of the spawn core (not seen by cffi). */
#ifndef PIDPROC_INTERNAL_H
#define PIDPROC_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "_core.h"

/* Older kernel headers lack these; the numbers are the same on every
 * architecture but alpha. */
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
/* waitid's idtype for a pidfd (Linux 5.4); glibc 2.36 has no P_PIDFD. */
#define PIDPROC_P_PIDFD 3
/* clone3's CLONE_AUTOREAP (Linux 7.1): the kernel reaps the child itself. */
#define PIDPROC_CLONE_AUTOREAP (1ULL << 34)

/* PIDFD_GET_INFO (Linux 6.13), first version of the struct: 64 bytes,
 * understood by every kernel that has the ioctl. */
struct pidproc_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
_Static_assert(sizeof(struct pidproc_pidfd_info) == 64, "PIDFD_INFO_SIZE_VER0");
#define PIDPROC_PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidproc_pidfd_info)
#define PIDPROC_PIDFD_INFO_PID 1ULL

/* What the child function receives from the parent. */
struct pidproc_child {
    struct pidproc_spawn *req;
    const sigset_t *old_mask;   /* the caller's signal mask, restored in the child */
    int handlers_cleared;       /* CLONE_CLEAR_SIGHAND already reset the handlers */
    int report_pid;             /* store getpid() in req->pid: the keeper's caller reads it */
};

/* The child side: runs on the parent's memory, never returns. */
int pidproc_child_main(void *arg);

/* 1 when fd is in the request's pass_fds.  Inline: the clone child calls it
 * (async-signal-safe, no call through the PLT) and so does the parent while
 * it builds glibc's file actions. */
static inline int pidproc_is_kept(const struct pidproc_spawn *req, int fd)
{
    for (int i = 0; i < req->n_keep_fds; i++)
        if (req->keep_fds[i] == fd)
            return 1;
    return 0;
}

/* ---- the parent's side of every spawn path (_parent.c) ---- */

/* Reset the outputs and point req->argv/envp/exec_paths at the strings
 * packed in the *_buf fields; every spawn path starts with it. */
void pidproc_prepare(struct pidproc_spawn *req);

/* Reap a child that failed before exec, close its pidfd; keeps errno. */
void pidproc_reap_failed(struct pidproc_spawn *req);

/* A stack for one clone3/clone child (_stack.c): usable bytes
 * [base, base + size), a PROT_NONE guard page below base. */
struct pidproc_stack {
    char *base;
    size_t size;
    int slot;   /* which pool slot, or negative: mapped for this spawn alone */
};

/* What a clone3/clone spawn keeps across the clone call: the child's
 * stack, the caller's signal mask (restored in the parent afterwards and in
 * the child first thing), what the child receives, and the caller's errno
 * (the child runs on this thread's TLS and may change it). */
struct pidproc_clone_frame {
    struct pidproc_stack stack;
    sigset_t old_mask;
    struct pidproc_child ctx;
    int saved_errno;
};

/* How a spawn run on the keeper thread (_lifecycle.c) reaches the thread
 * that asked for it.  That thread sleeps on exec_word, which is nonzero
 * until the child has exec'd or exited: the clone passes it as
 * CLONE_CHILD_CLEARTID, so the kernel zeroes it and wakes the sleeper from
 * the child's own execve or exit, one wake-up and no hop through the
 * keeper.  When no child was made, the keeper zeroes and wakes exec_word
 * itself (_lifecycle.c). */
struct pidproc_handover {
    const sigset_t *child_mask;   /* the asking thread's: the child starts with it */
    uint32_t *exec_word;
    struct pidproc_clone_frame *frame;   /* the asking thread's: the child runs on it */
};

/* One clone3/clone spawn.  h is NULL when the calling thread clones itself;
 * then the result is complete when it returns.  With h (the keeper), a
 * return of 0 means a child was made and the asking thread finishes the
 * request with pidproc_clone_finish() once exec_word is zero; the keeper
 * touches nothing of the request after the clone.  Nonzero: no child. */
typedef int (*pidproc_spawn_fn)(struct pidproc_spawn *req, const struct pidproc_handover *h);

/* The asking thread's half of a keeper spawn whose clone made a child
 * (_clone.c): the failed-before-exec reap, the pidfd check. */
int pidproc_clone_finish(struct pidproc_spawn *req, struct pidproc_clone_frame *f);

/* Run fn on the keeper thread (_lifecycle.c), a thread that never exits, so
 * that a parent-death signal set in the child never fires because the
 * Python thread that asked for the spawn ended.  Blocks until the child has
 * exec'd or exited; the child gets the calling thread's signal mask. */
int pidproc_keeper_call(pidproc_spawn_fn fn, struct pidproc_spawn *req);

/* A function of the running glibc, looked up with dlsym the first time
 * (_toolkit.c), so that one build serves a glibc that lacks it.  Threads
 * racing on the first look store the same pointer. */
struct pidproc_glibc_fn {
    const char *name;
    void *fn;     /* NULL: the running glibc lacks it */
    int looked;
};
void *pidproc_glibc_fn(struct pidproc_glibc_fn *f);

/* glibc 2.39's pidfd_getpid (_toolkit.c), or NULL. */
typedef int (*pidproc_pidfd_getpid_fn)(int);
pidproc_pidfd_getpid_fn pidproc_glibc_pidfd_getpid(void);


/* 0, or an errno (ENOMEM) with nothing taken.  Async-signal-unsafe only on
 * the first use of a slot (mmap); never called from the child. */
int pidproc_stack_take(struct pidproc_stack *s);
/* Give the stack back once the child has exec'd or exited; keeps errno. */
void pidproc_stack_put(struct pidproc_stack *s);

#endif
