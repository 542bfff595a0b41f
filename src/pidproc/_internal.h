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

#endif
