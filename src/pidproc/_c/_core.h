/* The one interface between Python and the C spawn core.
 *
 * This file is read twice: by the C compiler (included from the .c files)
 * and by cffi's cdef parser (build_ffi.py), so it holds declarations only:
 * no #include, no #define, no macros.
 *
 * Python fills one struct pidproc_spawn with everything already converted
 * (argv, envp, the candidate executables, the fd plan, the credentials), so
 * the child created by clone neither allocates nor frees; the child reports a
 * failure by writing err_step/err_errno into the same struct (it shares the
 * parent's memory until it execs or exits).
 *
 * Every spawn function returns:
 *   0       a child was created.  err_step == 0: it is running the program,
 *           pid and pidfd are set.  err_step != 0: it failed at that step
 *           before exec and has already been reaped; its pidfd is closed.
 *   > 0     an errno: the spawn syscall itself failed (EAGAIN, ENOMEM,
 *           EMFILE, ...); nothing was created.
 *   < 0     -errno: this path cannot work in this process (ENOSYS, EPERM
 *           from a seccomp filter, EINVAL for an unknown flag); nothing was
 *           created and the caller may try the next path.
 */

enum pidproc_step {
    PIDPROC_STEP_NONE = 0,
    PIDPROC_STEP_EXEC = 1,    /* execve of every candidate failed */
    PIDPROC_STEP_CHDIR = 2,   /* chdir(cwd) failed */
    PIDPROC_STEP_OTHER = 3    /* a setup step before exec failed (dup2, setsid, setuid, ...) */
};

struct pidproc_spawn {
    /* ---- in, owned by Python ---- */
    char **argv;              /* argc + 1 slots, filled by C from argv_buf */
    char *argv_buf;           /* argc NUL-terminated strings back to back */
    int argc;
    char **envp;              /* NULL: inherit environ; else envc + 1 slots */
    char *envp_buf;
    int envc;
    char **exec_paths;        /* candidate executables, in PATH order */
    char *exec_buf;
    int n_exec;
    const char *cwd;          /* NULL: stay */
    int stdin_fd;             /* -1: inherit; else dup2'd onto 0 */
    int stdout_fd;
    int stderr_fd;
    const int *keep_fds;      /* sorted, made inheritable (pass_fds) */
    int n_keep_fds;
    int close_fds;
    int restore_signals;      /* SIGPIPE and SIGXFSZ back to SIG_DFL */
    int new_session;          /* setsid() */
    int pgid;                 /* -1: leave; else setpgid(0, pgid) */
    int umask;                /* -1: leave */
    long long uid;            /* -1: leave */
    long long gid;            /* -1: leave */
    const unsigned int *groups;
    int n_groups;             /* -1: leave */
    int probe_only;           /* the child _exit(0)s at once (capability probes) */
    /* ---- out ---- */
    int pid;
    int pidfd;
    int err_step;             /* enum pidproc_step */
    int err_errno;
    /* ---- in: lifecycle options (_lifecycle.py); all 0: nothing to do ---- */
    int pdeathsig;            /* prctl(PR_SET_PDEATHSIG) in the child, after the credentials */
    int parent_pid;           /* with pdeathsig: the child SIGKILLs itself when getppid() differs */
    int no_new_privs;         /* prctl(PR_SET_NO_NEW_PRIVS) in the child */
    int via_keeper;           /* clone3/clone from the keeper thread, which never exits (_lifecycle.c) */
    int into_cgroup;          /* clone3 CLONE_INTO_CGROUP into cgroup_fd, a cgroup2 directory */
    int cgroup_fd;
    unsigned long long clone3_flags;  /* CLONE_AUTOREAP, CLONE_NNP, CLONE_PIDFD_AUTOKILL (Linux 7.1) */
};

int pidproc_spawn_clone3(struct pidproc_spawn *req);
int pidproc_spawn_clone(struct pidproc_spawn *req);
int pidproc_spawn_pidfd_spawn(struct pidproc_spawn *req);

/* 1 when this build has a clone3 trampoline for the CPU architecture. */
int pidproc_clone3_compiled(void);
/* 1 when the running glibc exports pidfd_spawn and pidfd_getpid (2.39+),
 * looked up at run time; 0 when it does not; -ENOENT when a child could not
 * be named here (no /proc, no PIDFD_GET_INFO). */
int pidproc_pidfd_spawn_available(void);
/* The running glibc's version string, e.g. "2.36". */
const char *pidproc_glibc_version(void);

/* The size in bytes of the stack a clone3/clone child runs on (_stack.c). */
long pidproc_child_stack_size(void);
/* Measuring what that child really uses (python -m tests.child_stack): with
 * on != 0, every clone3/clone spawn from now on gives its child a fresh
 * 256 KiB stack filled with a pattern and notes how many bytes of it the
 * child wrote; on == 0 goes back to the pool.  Returns the most seen since
 * the previous call (0: no spawn) and starts counting again from 0. */
long pidproc_child_stack_probe(int on);

/* ---- lifecycle (_lifecycle.c): parent-side helpers, no async-signal-safety contract ---- */

/* What a raw waitid(2) with its fifth (rusage) argument reports.  The
 * kernel's struct rusage: two timevals of longs, then fourteen longs. */
struct pidproc_waited {
    int pid;                  /* 0 with WNOHANG and nothing to report */
    int code;                 /* si_code: CLD_EXITED, CLD_KILLED, ... */
    int status;               /* si_status */
    unsigned int uid;         /* si_uid: the child's real user id */
    long ru[18];              /* utime sec, usec, stime sec, usec, maxrss .. nivcsw */
};
/* waitid(P_PIDFD, pidfd, options) with the rusage argument; 0 or -errno. */
int pidproc_waitid_rusage(int pidfd, int options, struct pidproc_waited *out);
/* 1 if the calling thread has the capability in its effective set, 0 if not, -errno. */
int pidproc_has_capability(int cap);
/* The number the next file descriptor would get (one open and close), or -errno. */
int pidproc_lowest_free_fd(void);
/* prctl(PR_SET_NO_NEW_PRIVS, 1) for the calling thread: 0 or -errno (a preexec_fn child). */
int pidproc_set_no_new_privs(void);
/* 1 once the keeper thread runs in this process (for tests and the bench). */
int pidproc_keeper_running(void);

/* ---- the pidfd toolkit (_toolkit.c): parent-side syscalls os lacks ----
 * Each returns its result, or -errno on failure. */

/* pidfd_open(2), Linux 5.3: a pidfd (close-on-exec), for interpreters whose os lacks it. */
int pidproc_pidfd_open(int pid, unsigned int flags);
/* pidfd_send_signal(2), Linux 5.1, without a siginfo: 0. */
int pidproc_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
/* pidfd_getfd(2), Linux 5.6: a close-on-exec duplicate of targetfd of the process. */
int pidproc_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
/* process_madvise(2), Linux 5.10: n <= 1024 ranges (an unsigned long holds an
 * address on every Linux ABI); bytes advised. */
long long pidproc_process_madvise(int pidfd, const unsigned long *addrs, const size_t *lens,
                                  size_t n, int advice, unsigned int flags);
/* setns(2); with a pidfd (Linux 5.8), nstype is a mask of CLONE_NEW* flags. */
int pidproc_setns(int fd, int nstype);
/* glibc 2.39's pidfd_getpid; -ENOSYS when the running glibc lacks it. */
int pidproc_pidfd_getpid(int pidfd);
