/* Declarations shared by the C files of the spawn core (not seen by cffi). */
#ifndef PIDPROC_INTERNAL_H
#define PIDPROC_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stddef.h>

#include "_core.h"

/* What the child function receives from the parent. */
struct pidproc_child {
    struct pidproc_spawn *req;
    const sigset_t *old_mask;   /* the caller's signal mask, restored in the child */
    int handlers_cleared;       /* CLONE_CLEAR_SIGHAND already reset the handlers */
};

/* The child side: runs on the parent's memory, never returns. */
int pidproc_child_main(void *arg);

/* Reset the outputs and point req->argv/envp/exec_paths at the strings
 * packed in the *_buf fields; every spawn path starts with it. */
void pidproc_prepare(struct pidproc_spawn *req);

/* Reap a child that failed before exec, close its pidfd; keeps errno. */
void pidproc_reap_failed(struct pidproc_spawn *req);

/* One clone3/clone spawn.  child_mask is the signal mask the child starts
 * the program with: NULL for the calling thread's own, or the mask of the
 * thread that handed the spawn to the keeper thread. */
typedef int (*pidproc_spawn_fn)(struct pidproc_spawn *req, const sigset_t *child_mask);

/* Run fn on the keeper thread (_lifecycle.c), a thread that never exits, so
 * that a parent-death signal set in the child never fires because the
 * Python thread that asked for the spawn ended.  Blocks until fn returns;
 * the child gets the calling thread's signal mask. */
int pidproc_keeper_call(pidproc_spawn_fn fn, struct pidproc_spawn *req);

/* A stack for one clone3/clone child (_stack.c): usable bytes
 * [base, base + size), a PROT_NONE guard page below base. */
struct pidproc_stack {
    char *base;
    size_t size;
    int slot;   /* which pool slot, or negative: mapped for this spawn alone */
};

/* 0, or an errno (ENOMEM) with nothing taken.  Async-signal-unsafe only on
 * the first use of a slot (mmap); never called from the child. */
int pidproc_stack_take(struct pidproc_stack *s);
/* Give the stack back once the child has exec'd or exited; keeps errno. */
void pidproc_stack_put(struct pidproc_stack *s);

#endif
