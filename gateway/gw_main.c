/*
 * gw_main.c - meridiand: start-up, drives, listeners, signals, shutdown.
 *
 * Start-up order, and why:
 *   1. Load and validate the config; any problem exits 1 with the precise
 *      file:line: [section] key: message, before anything touches disk.
 *   2. Take an exclusive flock on <meta_dir>/LOCK so two daemons can never
 *      share one site's data (exit 2 if it is held).
 *   3. Probe every data dir: create it if missing, write+fdatasync+unlink a
 *      probe file, statvfs for capacity. A dir that fails is marked offline
 *      (with the error) instead of failing start-up: a site with >= k good
 *      drives must keep serving. Probes repeat every 10 s so a drive that
 *      disappears or comes back is noticed.
 *   4. Open the engine (engine/): the store on the data dirs and meta_dir,
 *      then the WAL in <meta_dir>/wal, replaying every record the index has
 *      not applied yet. A corrupt WAL stops start-up (exit 2) with the WAL's
 *      precise message, unless --wal-salvage is given. Too few drives for
 *      the store (MRD_EDEGRADED) does not stop the daemon: it serves health
 *      and admin, answers S3 with 503, and retries the open at each drive
 *      probe until enough drives are back.
 *   5. Bind the S3, replication and admin listeners. A bind failure exits 2
 *      naming the address. The TLS certificates and keys (the S3 TLS
 *      listener, mutual TLS between sites) are loaded right after the config
 *      is read, also by --check-config: a bad file exits 1 naming it.
 * /health/ready is 200 only while at least k drives are online, the
 * daemon is not draining, and the cluster's topology still holds this site
 * (a removed site takes no more client traffic from a load balancer).
 *
 * Memory: glibc's default malloc tuning is kept. A fixed mmap threshold
 * of 4 MiB with a 64 MiB trim threshold (tried for the replication
 * receiver's page faults, docs/benchmarks.md) kept the 1-3.5 MiB request
 * buffers in every thread's arena: 173 MiB stayed allocated after a mixed
 * load that leaves under 20 MiB with the defaults
 * (test_s3_stress.py::test_anonymous_memory_bounded).
 *
 * S3 requests are served by [s3] loops event-loop threads (gw_loop.c); this
 * main loop keeps admin, replication, drive probes and signals.
 *
 * SIGHUP reloads every TLS certificate, key and CA file (reload_cb): new
 * connections use the new ones, a file that fails keeps the old.
 *
 * Shutdown: SIGTERM or SIGINT stops the listeners (of every S3 loop) and
 * readiness at once, lets requests in flight on all loops finish for up to
 * 10 s, then leaves the event loops, joins the S3 loop threads, frees
 * everything and exits 0. A second signal exits immediately.
 */
#include "gw_int.h"
#include "replicator.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "engine.h"

#define DRAIN_TIMEOUT_S 10
#define DRIVE_PROBE_S   10

int
gw__drives_online(const gw_daemon *d)
{
    int n = 0;

    for (int i = 0; i < d->n_drives; i++)
        n += GW_LOAD(d->drives[i].state) == GW_DRIVE_ONLINE;
    return n;
}

gw_drive_verdict
gw__drive_verdict(const gw_daemon *d, int i, const struct store_drive_status *sd, const char **why)
{
    const gw_drive *gd = &d->drives[i];
    struct engine *e = GW_LOAD(d->eng);
    store_drive_state sst = STORE_DRIVE_ONLINE;
    int full = 0, err = GW_LOAD(gd->err); /* the probe may update gd: atomics */
    gw_drive_verdict v;

    if (sd) {
        sst = sd->state;
        full = sd->full;
    } else if (e && store_drive_state_get(engine_store(e), i, &sst, &full) != 0) {
        sst = STORE_DRIVE_ONLINE; /* the store has no such drive: the probe decides */
        full = 0;
    }
    if (GW_LOAD(gd->state) != GW_DRIVE_ONLINE || sst != STORE_DRIVE_ONLINE)
        v = GW_DRIVE_FAILED;
    else
        v = full ? GW_DRIVE_FULL : GW_DRIVE_OK;
    if (why)
        *why = err                    ? mrd_strerror(err)
               : v == GW_DRIVE_FAILED ? "I/O errors"
               : v == GW_DRIVE_FULL   ? "a write found no space: reads only until it has room"
                                      : "";
    return v;
}

int
gw__engine_failed(const gw_daemon *d)
{
    engine_status st;
    struct engine *e = GW_LOAD(d->eng);

    return e && engine_get_status(e, &st) == 0 && st.failed;
}

int
gw__ready(const gw_daemon *d)
{
    return !GW_LOAD(d->shutting_down) && gw__drives_online(d) >= d->conf->ec_k && GW_LOAD(d->eng) &&
           !gw__engine_failed(d) && !GW_LOAD(d->removed_at);
}

/* Writes, syncs and removes a small file: proves the drive takes durable writes. */
static int
probe_drive(gw_drive *dr)
{
    char path[4200];
    struct statvfs vfs;
    int fd, rc = 0;
    static const char payload[] = "meridian drive probe\n";

    rc = mrd_mkdir_p(dr->path);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/.meridian-probe", dr->path);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = -errno;
        } else {
            if (write(fd, payload, sizeof(payload) - 1) != (ssize_t)(sizeof(payload) - 1))
                rc = errno ? -errno : -EIO;
            else if (fdatasync(fd) != 0)
                rc = -errno;
            close(fd);
            unlink(path);
        }
    }
    if (rc == 0 && statvfs(dr->path, &vfs) == 0) {
        GW_STORE(dr->total_bytes, (uint64_t)vfs.f_blocks * vfs.f_frsize);
        GW_STORE(dr->free_bytes, (uint64_t)vfs.f_bavail * vfs.f_frsize);
    }
    return rc;
}

static void
probe_all(gw_daemon *d)
{
    for (int i = 0; i < d->n_drives; i++) {
        gw_drive *dr = &d->drives[i];
        gw_drive_state was = dr->state;
        int rc = probe_drive(dr);
        GW_STORE(dr->err, rc);
        GW_STORE(dr->state, rc == 0 ? GW_DRIVE_ONLINE : GW_DRIVE_OFFLINE);
        if (dr->state != was || (rc != 0 && d->started_ms == 0)) {
            if (rc != 0)
                MRD_ERROR("drive.offline", "drive=%d path=%s error=\"%s\"", i, dr->path,
                          mrd_strerror(rc));
            else
                MRD_INFO("drive.online", "drive=%d path=%s", i, dr->path);
        }
    }
}

static void
engine_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_daemon *d = arg;

    (void)fd;
    (void)what;
    engine_poll(d->eng);
}

/*
 * Test hook: MERIDIAN_TEST_WAL_FAULT=<op>:<n> (op: write, sync, roll) makes
 * the n-th and every later WAL operation of that kind fail with EIO, so
 * tests can drive a real daemon through an fdatasync failure. Logged loudly
 * at start-up; never set it in production.
 */
static int test_fault_op = -1;
static uint64_t test_fault_n;

static int
test_wal_fault(void *ud, int op, uint64_t nth)
{
    (void)ud;
    return op == test_fault_op && nth >= test_fault_n ? -EIO : 0;
}

static void
arm_test_fault(engine_opts *eo)
{
    const char *v = getenv("MERIDIAN_TEST_WAL_FAULT");
    static const char *const ops[] = {"write", "sync", "roll"};
    char *end;

    if (!v || !*v)
        return;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(ops[i]);
        if (strncmp(v, ops[i], n) == 0 && v[n] == ':') {
            test_fault_n = strtoull(v + n + 1, &end, 10);
            if (*end || test_fault_n == 0)
                break;
            test_fault_op = i; /* wal_io_op: WRITE 0, SYNC 1, ROLL 2 */
            eo->wal_fault = test_wal_fault;
            MRD_WARN("test.fault_armed",
                     "wal_op=%s from=%llu reason=\"MERIDIAN_TEST_WAL_FAULT "
                     "is set: this daemon will fail on purpose\"",
                     ops[i], (unsigned long long)test_fault_n);
            return;
        }
    }
    MRD_WARN("test.fault_ignored", "value=\"%s\" reason=\"use write:N, sync:N or roll:N\"", v);
}

/* Opens the engine. Returns 0 (open, or not yet: too few drives), or an
 * error that must stop start-up. */
static int
open_engine(gw_daemon *d)
{
    engine_opts eo;
    struct engine *eng = NULL;
    char report[512] = "";
    uint64_t replayed = 0;
    uint64_t t0 = mrd_clock_mono_ns();
    int rc;

    memset(&eo, 0, sizeof(eo));
    eo.conf = d->conf;
    eo.wal_salvage = d->wal_salvage;
    eo.report = report;
    eo.report_size = sizeof(report);
    eo.replayed = &replayed;
    arm_test_fault(&eo);
    rc = engine_open(&eo, &eng);
    if (rc == MRD_EDEGRADED) {
        MRD_ERROR("engine.degraded", "error=\"%s\" drives_online=%d need=%d", mrd_strerror(rc),
                  gw__drives_online(d), d->conf->ec_k);
        return 0;
    }
    if (rc != 0) {
        MRD_ERROR("engine.open_failed", "error=\"%s\"", mrd_strerror(rc));
        fprintf(stderr, "meridiand: cannot open the store and WAL: %s\n  %s\n", mrd_strerror(rc),
                report);
        return rc;
    }
    /* S3 loops see it from here on (gw__engine) */
    GW_STORE(d->eng, eng);
    d->eng_ev = event_new(d->base, engine_fd(d->eng), EV_READ | EV_PERSIST, engine_ready_cb, d);
    if (!d->eng_ev || event_add(d->eng_ev, NULL) != 0) {
        fprintf(stderr, "meridiand: cannot watch the engine's completion queue\n");
        return -ENOMEM;
    }
    MRD_INFO("engine.open", "replayed=%llu ms=%.1f %s", (unsigned long long)replayed,
             (double)(mrd_clock_mono_ns() - t0) / 1e6, report);
    /* opened late (drives came back): replication starts streaming now */
    if (d->replicator && (rc = repl_attach_engine(d->replicator, d->eng)) != 0)
        MRD_ERROR("repl.attach_failed", "error=\"%s\"", mrd_strerror(rc));
    return 0;
}

/* The store takes a drive offline itself when a write to it fails (or marks
 * it full when the write found no space), and only a rescan brings it back.
 * Once the probe sees such a drive work again, rescan, and heal what it
 * missed: this is what makes failback automatic after drives are replaced,
 * remounted or given room. */
static void
store_rescan(gw_daemon *d)
{
    static store_status ss; /* large; loop thread only */
    store *st;
    int back = 0, online;

    if (!d->eng || store_get_status((st = engine_store(d->eng)), &ss) != 0)
        return;
    for (int i = 0; i < ss.n_drives && i < d->n_drives; i++)
        back += (ss.drives[i].state == STORE_DRIVE_OFFLINE || ss.drives[i].full) &&
                d->drives[i].state == GW_DRIVE_ONLINE;
    if (back && (online = store_drives_rescan(st)) > ss.online_drives - ss.full_drives) {
        MRD_INFO("drive.rescan", "store_drives_online=%d heal=all", online);
        store_heal_start(st, 1);
    }
}

void
gw__probe_drives(gw_daemon *d)
{
    probe_all(d);
    store_rescan(d);
}

static void
drive_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_daemon *d = arg;

    (void)fd;
    (void)what;
    gw__probe_drives(d);
    if (!d->eng && !GW_LOAD(d->shutting_down) && gw__drives_online(d) >= d->conf->ec_k)
        open_engine(d);
    gw__s3_mpu_expire_tick(d);
}

static void
drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_daemon *d = arg;
    static int ticks;
    int open = gw__loops_conn_count(d) + gw_http_server_conn_count(d->admin);

    (void)fd;
    (void)what;
    if (open == 0 || ++ticks > DRAIN_TIMEOUT_S * 10) {
        if (open)
            MRD_WARN("shutdown.drain_timeout", "connections_open=%d", open);
        event_base_loopexit(d->base, NULL);
    }
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    gw_daemon *d = arg;
    struct timeval tick = {0, 100000};
    struct repl *rp = d->replicator;

    (void)what;
    if (d->shutting_down) {
        MRD_WARN("shutdown.forced", "signal=%d", (int)sig);
        for (int i = 0; i < d->n_loops; i++)
            if (d->loops[i].threaded)
                event_base_loopbreak(d->loops[i].base);
        event_base_loopbreak(d->base);
        return;
    }
    GW_STORE(d->shutting_down, 1);
    MRD_INFO("shutdown.begin", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
    gw__loops_stop_listening(d);
    gw_http_server_stop_listening(d->admin);
    /* S3 loops stop using it (the view's copy) before it is freed */
    d->replicator = NULL;
    gw__view_refresh(d);
    repl_free(rp); /* before the listener it borrows */
    if (d->repl) {
        evconnlistener_free(d->repl);
        d->repl = NULL;
    }
    d->drain_timer = event_new(d->base, -1, EV_PERSIST, drain_check_cb, d);
    event_add(d->drain_timer, &tick);
}

/* SIGHUP: certificate rotation. Every TLS context reads its files again;
 * new connections use what loaded, connections already up keep theirs, and
 * a context whose files fail to load keeps its old certificate (logged). */
static void
reload_cb(evutil_socket_t sig, short what, void *arg)
{
    gw_daemon *d = arg;
    const struct {
        const char *name;
        struct tls_ctx *t;
    } ctxs[] = {{"s3", d->s3_tls}, {"replication", d->repl_tls}, {"proxy", d->proxy_tls}};
    char msg[600];
    int n = 0, failed = 0;

    (void)sig;
    (void)what;
    for (size_t i = 0; i < sizeof(ctxs) / sizeof(ctxs[0]); i++) {
        if (!ctxs[i].t)
            continue;
        n++;
        if (tls_ctx_reload(ctxs[i].t, msg, sizeof(msg)) == 0) {
            MRD_INFO("tls.reload", "ctx=%s cert=%s", ctxs[i].name, msg);
        } else {
            failed++;
            MRD_ERROR("tls.reload_failed", "ctx=%s error=\"%s\" kept=old_certificate", ctxs[i].name,
                      msg);
        }
    }
    MRD_INFO("signal.hup", "tls_contexts=%d failed=%d", n, failed);
}

/* The replicator announces this site's durable WAL position in heartbeats;
 * peers compare it with what they have applied to know they are behind. */
static uint64_t
local_high_water(void *ud)
{
    gw_daemon *d = ud;
    engine_status st;

    if (d->eng && engine_get_status(d->eng, &st) == 0)
        return st.wal_durable_lsn;
    return 0;
}

static void
on_peer_state(void *ud, const repl_peer_info *p, repl_peer_state old)
{
    gw__view_refresh(ud); /* routing on the S3 loops sees it at once */
    MRD_LOG(p->state == REPL_PEER_DOWN ? MRD_LOG_WARN : MRD_LOG_INFO, "peer.state",
            "peer=%s peer_id=%u from=%s to=%s rtt_ms=%.1f error=\"%s\"", p->name, p->id,
            repl_peer_state_name(old), repl_peer_state_name(p->state), p->rtt_ms, p->last_error);
}

/* Peer links run on the replication listener bound by listen_repl. */
static int
start_replicator(gw_daemon *d)
{
    char random_secret[64];
    repl_opts ro;
    int rc;

    repl_opts_init(&ro);
    ro.site_id = d->conf->site_id;
    ro.site_name = d->conf->site_name;
    if (d->conf->replication_secret[0]) {
        ro.secret = d->conf->replication_secret;
    } else if (d->repl_tls) {
        /* Mutual TLS and no secret: the certificates alone authenticate
         * peers (mrd_config checked that each has a pin or the CA). */
        ro.secret = NULL;
    } else {
        /* No peers, no secret and no TLS: a random secret nobody knows,
         * so no inbound peer can ever authenticate. */
        unsigned char raw[24];
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
            if (fd >= 0)
                close(fd);
            fprintf(stderr, "meridiand: cannot read /dev/urandom\n");
            return -EIO;
        }
        close(fd);
        for (size_t i = 0; i < sizeof(raw); i++)
            snprintf(random_secret + 2 * i, 3, "%02x", raw[i]);
        ro.secret = random_secret;
    }
    ro.listener = d->repl;
    ro.tls = d->repl_tls;
    ro.peers = d->conf->peers;
    ro.n_peers = d->conf->n_peers;
    ro.local_high_water = local_high_water;
    ro.anti_entropy_ms = d->conf->anti_entropy_s * 1000u;
    ro.summary_page_bytes = d->conf->summary_page_bytes;
    ro.failed_after_ms = (uint64_t)d->conf->failed_after_s * 1000u;
    ro.max_clock_skew_ms = d->conf->max_clock_skew_s * 1000u;
    ro.on_peer_state = on_peer_state;
    ro.on_topology = gw__on_topology;
    ro.self_replication = d->conf->listen_replication;
    ro.self_s3 = d->conf->listen_s3;
    ro.user_data = d;
    rc = repl_new(d->base, &ro, &d->replicator);
    if (rc == 0)
        rc = repl_start(d->replicator);
    if (rc == 0 && d->eng)
        rc = repl_attach_engine(d->replicator, d->eng);
    if (rc != 0)
        fprintf(stderr, "meridiand: cannot start the replicator: %s\n", mrd_strerror(rc));
    return rc;
}

static int
listen_repl(gw_daemon *d)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char spec[300];

    mrd_addr_format(&d->conf->listen_replication, spec, sizeof(spec));
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) != 0)
        return MRD_EINVAL;
    /* No callback yet: the listener stays disabled until the replicator
     * installs its own (start_replicator). */
    d->repl = evconnlistener_new_bind(
        d->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (struct sockaddr *)&ss, sslen);
    if (!d->repl)
        return errno ? -errno : -EADDRINUSE;
    MRD_INFO("http.listen", "listener=replication addr=%s", spec);
    return 0;
}

static int
lock_meta_dir(gw_daemon *d)
{
    char path[1100];
    int rc;

    rc = mrd_mkdir_p(d->conf->meta_dir);
    if (rc != 0) {
        fprintf(stderr, "meridiand: cannot create meta_dir %s: %s\n", d->conf->meta_dir,
                mrd_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof(path), "%s/LOCK", d->conf->meta_dir);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0) {
        rc = -errno;
        fprintf(stderr, "meridiand: cannot open %s: %s\n", path, mrd_strerror(rc));
        return rc;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        fprintf(stderr, "meridiand: %s is locked by another meridiand; one daemon per site data\n",
                path);
        return rc;
    }
    return 0;
}

static int
start_listeners(gw_daemon *d)
{
    const mrd_config *c = d->conf;
    char addr[300];
    int rc;

    /* the S3 listeners, one set per loop */
    if ((rc = gw__loops_init(d)) != 0)
        return rc;
    rc = gw_http_server_listen(d->admin, c->listen_admin.host, c->listen_admin.port, "admin", NULL);
    if (rc != 0)
        mrd_addr_format(&c->listen_admin, addr, sizeof(addr));
    if (rc == 0) {
        rc = listen_repl(d);
        if (rc != 0)
            mrd_addr_format(&c->listen_replication, addr, sizeof(addr));
    }
    if (rc != 0)
        fprintf(stderr, "meridiand: cannot listen on %s: %s\n", addr, mrd_strerror(rc));
    return rc;
}

/* Loads the TLS contexts the config asks for; 0, or -1 after saying why. */
static int
load_tls(gw_daemon *d)
{
    const mrd_config *c = d->conf;
    char err[512];
    tls_opts o;
    int rc = 0;

    if (c->has_s3_tls) {
        memset(&o, 0, sizeof(o));
        o.cert_file = c->s3_tls_cert;
        o.key_file = c->s3_tls_key;
        o.alpn = "http/1.1";
        rc = tls_ctx_new(&o, &d->s3_tls, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "meridiand: config error: [s3] tls: %s\n", err);
    }
    if (rc == 0 && c->repl_tls_cert[0]) {
        memset(&o, 0, sizeof(o));
        o.cert_file = c->repl_tls_cert;
        o.key_file = c->repl_tls_key;
        o.ca_file = c->repl_tls_ca[0] ? c->repl_tls_ca : NULL;
        o.verify_peer = 1;
        o.alpn = "h2";
        o.tls13_only = 1;
        rc = tls_ctx_new(&o, &d->repl_tls, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "meridiand: config error: [replication] tls: %s\n", err);
        /* the same identity for forwarded S3 requests, over HTTP/1.1 */
        o.alpn = "http/1.1";
        o.tls13_only = 0;
        if (rc == 0 && (rc = tls_ctx_new(&o, &d->proxy_tls, err, sizeof(err))) != 0)
            fprintf(stderr, "meridiand: config error: [replication] tls: %s\n", err);
    }
    return rc == 0 ? 0 : -1;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: meridiand --config FILE [--check-config] [--log-level LEVEL] "
               "[--wal-salvage]\n"
               "       meridiand --version\n"
               "  --config FILE      site configuration (see docs/configuration.md)\n"
               "  --check-config     validate the configuration and exit\n"
               "  --log-level LEVEL  debug, info, warn or error (overrides [log] level)\n"
               "  --wal-salvage      cut the WAL at a corrupt record instead of refusing to "
               "start\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'C'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"wal-salvage", no_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int check_only = 0, log_level = -1, opt, rc, exit_code = 2;
    char err[1024];
    gw_daemon d;
    struct timeval probe_every = {DRIVE_PROBE_S, 0};

    memset(&d, 0, sizeof(d));
    d.lock_fd = -1;
    while ((opt = getopt_long(argc, argv, "c:Cl:VhS", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'C':
            check_only = 1;
            break;
        case 'l':
            log_level = mrd_log_level_parse(optarg);
            if (log_level < 0) {
                fprintf(stderr, "meridiand: unknown log level '%s'\n", optarg);
                return 1;
            }
            break;
        case 'S':
            d.wal_salvage = 1;
            break;
        case 'V':
            printf("meridiand %s\n", MRD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 1;
    }
    rc = mrd_config_load(config_path, &d.conf, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "meridiand: config error: %s\n", err);
        return 1;
    }
    if (load_tls(&d) != 0) {
        mrd_config_free(d.conf);
        tls_ctx_free(d.s3_tls);
        tls_ctx_free(d.repl_tls);
        tls_ctx_free(d.proxy_tls);
        return 1;
    }
    if (check_only) {
        tls_ctx_free(d.s3_tls);
        tls_ctx_free(d.repl_tls);
        tls_ctx_free(d.proxy_tls);
        printf("%s: ok (site %s, id %u, %d drives, EC %d+%d, %d peers)\n", config_path,
               d.conf->site_name, d.conf->site_id, d.conf->n_data_dirs, d.conf->ec_k, d.conf->ec_m,
               d.conf->n_peers);
        mrd_config_free(d.conf);
        return 0;
    }
    mrd_log_setup(log_level >= 0 ? log_level : d.conf->log_level, d.conf->site_name);
    signal(SIGPIPE, SIG_IGN);

    if (lock_meta_dir(&d) != 0)
        goto out;
    d.n_drives = d.conf->n_data_dirs;
    for (int i = 0; i < d.n_drives; i++) {
        d.drives[i].path = d.conf->data_dirs[i];
        d.drives[i].state = GW_DRIVE_OFFLINE;
    }
    probe_all(&d);

    /* S3 loop threads signal the main loop and each other's bases */
    evthread_use_pthreads();
    d.base = event_base_new();
    if (!d.base || gw_http_server_new(d.base, NULL, gw__route_admin, &d, &d.admin) != 0 ||
        pthread_mutex_init(&d.route.mu, NULL) != 0) {
        fprintf(stderr, "meridiand: out of memory at start-up\n");
        goto out;
    }
    if (open_engine(&d) != 0)
        goto out;
    if (start_listeners(&d) != 0 || start_replicator(&d) != 0 || gw__route_init(&d) != 0)
        goto out;
    gw__view_refresh(&d);
    if (gw__loops_start(&d) != 0)
        goto out;
    d.sig_term = evsignal_new(d.base, SIGTERM, signal_cb, &d);
    d.sig_int = evsignal_new(d.base, SIGINT, signal_cb, &d);
    d.sig_hup = evsignal_new(d.base, SIGHUP, reload_cb, &d);
    d.drive_timer = event_new(d.base, -1, EV_PERSIST, drive_timer_cb, &d);
    event_add(d.sig_term, NULL);
    event_add(d.sig_int, NULL);
    event_add(d.sig_hup, NULL);
    event_add(d.drive_timer, &probe_every);
    d.started_ms = mrd_clock_realtime_ms(NULL);
    d.started_mono_ns = mrd_clock_mono_ns();
    MRD_INFO("daemon.start",
             "version=%s site_id=%u drives_online=%d drives=%d ec=%d+%d peers=%d "
             "ready=%d",
             MRD_VERSION, d.conf->site_id, gw__drives_online(&d), d.n_drives, d.conf->ec_k,
             d.conf->ec_m, d.conf->n_peers, gw__ready(&d));

    event_base_dispatch(d.base);
    gw__loops_join(&d);
    MRD_INFO("shutdown.complete", "uptime_s=%.1f",
             (double)(mrd_clock_mono_ns() - d.started_mono_ns) / 1e9);
    exit_code = 0;
out:
    gw__loops_join(&d); /* the S3 servers are freed: before the engine */
    gw_http_server_free(d.admin);
    gw__proxy_close_idle();
    repl_free(d.replicator); /* closes its WAL readers: before the engine */
    if (d.eng_ev)
        event_free(d.eng_ev);
    engine_close(d.eng);
    if (d.repl)
        evconnlistener_free(d.repl);
    if (d.sig_term)
        event_free(d.sig_term);
    if (d.sig_int)
        event_free(d.sig_int);
    if (d.sig_hup)
        event_free(d.sig_hup);
    if (d.drain_timer)
        event_free(d.drain_timer);
    if (d.drive_timer)
        event_free(d.drive_timer);
    if (d.route_timer)
        event_free(d.route_timer);
    gw__loops_free(&d); /* after engine_close: its last callbacks may use a loop's base */
    pthread_mutex_destroy(&d.route.mu);
    if (d.base)
        event_base_free(d.base);
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    tls_ctx_free(d.s3_tls); /* after every connection made from them */
    tls_ctx_free(d.repl_tls);
    tls_ctx_free(d.proxy_tls);
    mrd_config_free(d.conf);
    return exit_code;
}
