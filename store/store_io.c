/*
 * store_io.c - a few threads that run one object's per-shard I/O in parallel.
 *
 * Why. A durable write ends with one fdatasync per shard file. Issued one
 * after the other, each waits for its own trip to the disk: on ext4, where
 * every drive directory may share one journal, six serial fdatasyncs are six
 * journal commits (measured ~12 serial commits per 1 MiB object with the
 * directory fsyncs, 44 ms at p50 through the daemon). Issued together, they
 * overlap: separate disks work at once, and a shared journal folds the
 * concurrent syncs into one commit (jbd2 batches every handle waiting on the
 * running transaction). The same holds for the directory fsyncs of the
 * pre-created file pool (store_pool.c).
 *
 * How. store__parallel(s, n, fn, arg) runs fn(arg, i) for every i in [0, n)
 * and returns when all have returned. Items 1..n-1 go to a shared queue
 * served by io threads; the caller runs item 0 itself and then, rather than
 * sleeping while its items wait behind other writers' syncs, takes its own
 * remaining items off the queue and runs them. So a call always completes,
 * even when every io thread is blocked in someone else's fdatasync, and it
 * never runs another caller's work (whose latency it would add to its own).
 *
 * store__async(s, set, fn, arg) queues one item and returns at once;
 * store__await(s, set) waits for it the same way (running it itself if it is
 * still queued and no io thread is idle). The streaming writer uses the pair
 * to encode and write stripe j while its caller hashes stripe j+1
 * (store_write.c). A full queue, or no io thread, runs the item inline.
 *
 * Threads: one per drive (at most STORE_IO_THREADS), started at store_open;
 * they sleep in a condition wait when idle. A full queue (more items than
 * STORE_IO_QUEUE at once) makes the caller run the item inline.
 *
 * Invariants: an item's jobset lives on its caller's stack (or in its
 * writer, for store__async) until the caller
 * has seen left == 0, which happens only after the last item's decrement,
 * done under io_mu; nothing touches the jobset after that decrement.
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>

static void
job_done(store *s, store__jobset *set)
{
    pthread_mutex_lock(&s->io_mu);
    if (--set->left == 0)
        pthread_cond_broadcast(&s->io_done_cv);
    pthread_mutex_unlock(&s->io_mu);
}

/* Pops the oldest job (of `only` when it is not NULL). Called under io_mu. */
static int
queue_pop(store *s, store__jobset *only, store__job *out)
{
    for (int j = 0; j < s->io_n; j++) {
        int at = (s->io_head + j) % STORE_IO_QUEUE;
        if (only && s->io_q[at].set != only)
            continue;
        *out = s->io_q[at];
        /* close the gap: shift the jobs before it one slot forward */
        for (int t = j; t > 0; t--)
            s->io_q[(s->io_head + t) % STORE_IO_QUEUE] =
                s->io_q[(s->io_head + t - 1) % STORE_IO_QUEUE];
        s->io_head = (s->io_head + 1) % STORE_IO_QUEUE;
        s->io_n--;
        return 1;
    }
    return 0;
}

static void *
io_main(void *arg)
{
    store *s = arg;
    store__job j;

    pthread_mutex_lock(&s->io_mu);
    for (;;) {
        while (!s->io_stop && s->io_n == 0) {
            s->io_idle++;
            pthread_cond_wait(&s->io_cv, &s->io_mu);
            s->io_idle--;
        }
        if (s->io_n == 0) /* stopping and nothing left */
            break;
        if (!queue_pop(s, NULL, &j)) /* cannot happen: io_n > 0 */
            continue;
        pthread_mutex_unlock(&s->io_mu);
        j.fn(j.arg, j.i);
        job_done(s, j.set);
        pthread_mutex_lock(&s->io_mu);
    }
    pthread_mutex_unlock(&s->io_mu);
    return NULL;
}

/* Waits, under io_mu, until every item of set has finished; runs the set's
 * own queued items itself while no io thread is idle. */
static void
wait_set(store *s, store__jobset *set)
{
    store__job j;

    while (set->left > 0) {
        if (s->io_idle == 0 && queue_pop(s, set, &j)) {
            pthread_mutex_unlock(&s->io_mu);
            j.fn(j.arg, j.i);
            pthread_mutex_lock(&s->io_mu);
            set->left--;
        } else {
            pthread_cond_wait(&s->io_done_cv, &s->io_mu);
        }
    }
}

void
store__parallel(store *s, int n, store__par_fn fn, void *arg)
{
    store__jobset set = {.left = n};
    int inline_from = n;

    if (n <= 0)
        return;
    pthread_mutex_lock(&s->io_mu);
    for (int i = 1; i < n && s->n_io > 0; i++) {
        if (s->io_n == STORE_IO_QUEUE) {
            inline_from = i;
            break;
        }
        s->io_q[(s->io_head + s->io_n) % STORE_IO_QUEUE] =
            (store__job){.fn = fn, .arg = arg, .i = i, .set = &set};
        s->io_n++;
        pthread_cond_signal(&s->io_cv);
    }
    if (s->n_io == 0)
        inline_from = 1;
    pthread_mutex_unlock(&s->io_mu);

    fn(arg, 0);
    for (int i = inline_from; i < n; i++)
        fn(arg, i);
    pthread_mutex_lock(&s->io_mu);
    set.left -= 1 + (n - inline_from);
    wait_set(s, &set);
    pthread_mutex_unlock(&s->io_mu);
}

void
store__async(store *s, store__jobset *set, store__par_fn fn, void *arg)
{
    int queued = 0;

    pthread_mutex_lock(&s->io_mu);
    set->left = 0;
    if (s->n_io > 0 && s->io_n < STORE_IO_QUEUE) {
        set->left = 1;
        s->io_q[(s->io_head + s->io_n) % STORE_IO_QUEUE] =
            (store__job){.fn = fn, .arg = arg, .i = 0, .set = set};
        s->io_n++;
        pthread_cond_signal(&s->io_cv);
        queued = 1;
    }
    pthread_mutex_unlock(&s->io_mu);
    if (!queued)
        fn(arg, 0);
}

void
store__await(store *s, store__jobset *set)
{
    pthread_mutex_lock(&s->io_mu);
    wait_set(s, set);
    pthread_mutex_unlock(&s->io_mu);
}

int
store__io_start(store *s)
{
    int want = s->n_drives < STORE_IO_THREADS ? s->n_drives : STORE_IO_THREADS;
    int rc = 0;

    pthread_mutex_init(&s->io_mu, NULL);
    pthread_cond_init(&s->io_cv, NULL);
    pthread_cond_init(&s->io_done_cv, NULL);
    s->io_q = calloc(STORE_IO_QUEUE, sizeof(*s->io_q));
    if (!s->io_q)
        return -ENOMEM;
    for (int i = 0; i < want; i++) {
        if ((rc = pthread_create(&s->io_thr[i], NULL, io_main, s)) != 0) {
            rc = -rc;
            break;
        }
        s->n_io++;
    }
    return s->n_io > 0 ? 0 : rc;
}

void
store__io_stop(store *s)
{
    if (!s->io_q)
        return;
    pthread_mutex_lock(&s->io_mu);
    s->io_stop = 1;
    pthread_cond_broadcast(&s->io_cv);
    pthread_mutex_unlock(&s->io_mu);
    for (int i = 0; i < s->n_io; i++)
        pthread_join(s->io_thr[i], NULL);
    s->n_io = 0;
    free(s->io_q);
    s->io_q = NULL;
    pthread_mutex_destroy(&s->io_mu);
    pthread_cond_destroy(&s->io_cv);
    pthread_cond_destroy(&s->io_done_cv);
}
