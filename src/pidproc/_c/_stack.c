/* The stacks the clone3 and clone children run on.
 *
 * A CLONE_VM child cannot use its parent's stack: the parent thread is
 * asleep on it, in the middle of the clone call.  The child's stack is not
 * taken from the caller's frame either: a thread made with
 * threading.stack_size(32768), or a main thread under a small `ulimit -s`,
 * has no room for it, and a frame larger than the guard page jumps over it
 * into whatever is mapped below (a crash, or silent corruption).
 *
 * So the stacks come from a process-wide pool: each one mmap'd with a
 * PROT_NONE guard page below it (a child that overflowed would fault, never
 * write into a neighbour), mapped the first time it is needed and then kept.
 * The pool grows to the number of spawns running at once, up to POOL_SLOTS;
 * a spawn beyond that maps a stack for itself and unmaps it afterwards.  In
 * the steady state a spawn pays one compare-and-swap to take slot 0 and one
 * store to give it back; the pages stay resident, so no page faults either.
 *
 * fork(): a slot is busy only while a thread is inside a spawn, between
 * pidproc_stack_take() and pidproc_stack_put().  In a forked child only the
 * thread that called fork() exists, and it was not inside a spawn (nothing
 * in this core forks), so every slot busy in the child belonged to a thread
 * that is gone: the atfork handler frees them all.  The stacks themselves
 * were copied along with the rest of memory.  No lock is ever held, so
 * there is nothing that a fork at any instant could leave locked.
 *
 * The probe (pidproc_child_stack_probe) measures what the child really
 * uses: a spawn gets a big stack filled with a pattern instead of a pool
 * slot, and after the spawn the untouched pattern at the bottom is counted.
 */
#include "_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Sized from measurement (`python -m tests.child_stack`; x86_64, gcc -O2,
 * glibc 2.36): the deepest child wrote 2,472 bytes (close_fds by listing
 * /proc/self/fd, whose 2 KiB getdents buffer is the largest local, with
 * every other option); 5,480 when the core is loaded with RTLD_LAZY and the
 * child itself resolves libc symbols (the dynamic linker's trampoline saves
 * the vector registers with xsave, ~2.7 KiB with AVX-512; with AMX tile
 * state, which some glibc versions save too, 8 KiB more).  32 KiB is 6x the
 * worst measured and leaves room for other compilers and libcs; it costs
 * address space, not memory: only the pages the child touches become
 * resident, and the guard page turns an overflow into a fault. */
#define CHILD_STACK_SIZE (32 * 1024)
#define POOL_SLOTS 64
#define PROBE_STACK_SIZE (256 * 1024)
#define PROBE_FILL 0xA5

enum { SLOT_OWN = -1, SLOT_PROBE = -2 };

static struct {
    atomic_int busy;
    char *base;   /* lowest usable byte, NULL until first use; the busy owner's */
} pool[POOL_SLOTS];

static atomic_int probing;
static atomic_long deepest;

/* Set when the library is loaded (see the end of this file). */
static size_t guard = 4096, child_size = CHILD_STACK_SIZE, probe_size = PROBE_STACK_SIZE;

static size_t round_to_page(size_t n)
{
    return (n + guard - 1) / guard * guard;
}

/* size usable bytes above one PROT_NONE guard page; NULL with errno set. */
static char *map_stack(size_t size)
{
    char *p = mmap(NULL, guard + size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (mprotect(p, guard, PROT_NONE) != 0) {
        int err = errno;
        munmap(p, guard + size);
        errno = err;
        return NULL;
    }
    return p + guard;
}

static void unmap_stack(char *base, size_t size)
{
    munmap(base - guard, guard + size);
}

int pidproc_stack_take(struct pidproc_stack *s)
{
    if (atomic_load_explicit(&probing, memory_order_relaxed)) {
        s->size = probe_size;
        s->slot = SLOT_PROBE;
        if (!(s->base = map_stack(s->size)))
            return errno ? errno : ENOMEM;
        memset(s->base, PROBE_FILL, s->size);
        return 0;
    }
    s->size = child_size;
    for (int i = 0; i < POOL_SLOTS; i++) {
        int free_ = 0;
        if (atomic_load_explicit(&pool[i].busy, memory_order_relaxed) != 0
            || !atomic_compare_exchange_strong_explicit(&pool[i].busy, &free_, 1,
                                                        memory_order_acquire,
                                                        memory_order_relaxed))
            continue;
        if (!pool[i].base && !(pool[i].base = map_stack(s->size))) {
            int err = errno ? errno : ENOMEM;
            atomic_store_explicit(&pool[i].busy, 0, memory_order_release);
            return err;
        }
        s->base = pool[i].base;
        s->slot = i;
        return 0;
    }
    /* More spawns at once than slots: this one maps its own. */
    s->slot = SLOT_OWN;
    if (!(s->base = map_stack(s->size)))
        return errno ? errno : ENOMEM;
    return 0;
}

static void note_depth(const struct pidproc_stack *s)
{
    size_t untouched = 0;
    while (untouched < s->size && (unsigned char)s->base[untouched] == PROBE_FILL)
        untouched++;
    long used = (long)(s->size - untouched);
    long seen = atomic_load(&deepest);
    while (used > seen && !atomic_compare_exchange_weak(&deepest, &seen, used)) {}
}

void pidproc_stack_put(struct pidproc_stack *s)
{
    int saved = errno;
    if (s->slot >= 0) {
        atomic_store_explicit(&pool[s->slot].busy, 0, memory_order_release);
    } else {
        if (s->slot == SLOT_PROBE)
            note_depth(s);
        unmap_stack(s->base, s->size);
    }
    s->base = NULL;
    errno = saved;
}

long pidproc_child_stack_probe(int on)
{
    atomic_store(&probing, on != 0);
    return atomic_exchange(&deepest, 0);
}

long pidproc_child_stack_size(void) { return (long)child_size; }

static void free_all_slots(void)
{
    for (int i = 0; i < POOL_SLOTS; i++)
        atomic_store_explicit(&pool[i].busy, 0, memory_order_relaxed);
}

__attribute__((constructor)) static void init(void)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0)
        guard = (size_t)page;
    child_size = round_to_page(CHILD_STACK_SIZE);
    probe_size = round_to_page(PROBE_STACK_SIZE);
    (void)pthread_atfork(NULL, NULL, free_all_slots);
}
