/* txn.c -- transactional outputs.  A command's output files are written under temporary names
 * (PATH.tmp.PID) registered here, and renamed into place together at the end (cli_txn_commit)
 * or all removed (cli_txn_abort, or the signal handler on SIGINT, SIGTERM, SIGHUP): no half
 * file, no temporary and no mix of a new and an old file of one run is left behind.
 *
 * The handler only calls unlink, signal and raise (async-signal-safe) and reads a table whose
 * entries are complete before the count that publishes them is raised.  The renames of a commit
 * run with those signals blocked, so an interruption falls before the first or after the last.
 * What POSIX leaves open: SIGKILL or a crash of the machine between two renames of one commit
 * (microseconds) can leave the first file new and the second old; a rename that fails in the
 * middle of a commit (another process removed the directory) is reported, and the files of the
 * commit already renamed are then removed, so that no mixed pair remains. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TXN_MAX 16
#define TXN_PATH 4224

static char txn_tmp[TXN_MAX][TXN_PATH];     /* the temporaries, read by the handler */
static char txn_final[TXN_MAX][TXN_PATH];
static volatile sig_atomic_t txn_live[TXN_MAX];
static volatile sig_atomic_t txn_count;
static int txn_handlers;

static void txn_on_signal(int sig)
{
    for (int i = 0; i < txn_count; i++)
        if (txn_live[i]) unlink(txn_tmp[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void txn_install(void)
{
    if (txn_handlers) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = txn_on_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        /* leave a signal the caller ignores (nohup) ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
    txn_handlers = 1;
}

static void block_signals(sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    sigprocmask(SIG_BLOCK, &s, old);
}

const char *cli_txn_add(const char *path)
{
    if (txn_count >= TXN_MAX) {
        fprintf(stderr, "nkern: error: %s: too many output files in one command\n", path);
        return NULL;
    }
    int i = txn_count;
    if (snprintf(txn_tmp[i], TXN_PATH, "%s.tmp.%ld", path, (long)getpid()) >= TXN_PATH ||
        snprintf(txn_final[i], TXN_PATH, "%s", path) >= TXN_PATH) {
        fprintf(stderr, "nkern: error: %s: path too long (use a shorter output path)\n", path);
        return NULL;
    }
    txn_install();
    txn_live[i] = 1;
    txn_count = i + 1; /* published after the entry is complete */
    return txn_tmp[i];
}

int cli_txn_write_npy(const char *path, const nk_array *a, int as_f32)
{
    const char *tmp = cli_txn_add(path);
    if (!tmp) return 1;
    nk_error err = {{0}};
    nk_status st = nk_npy_write_file(tmp, a, as_f32, &err);
    if (st == NK_OK) return 0;
    cli_txn_abort();
    /* the message names the temporary; say which output it was */
    fprintf(stderr, "nkern: error: %s: %s\n", path, err.msg);
    return st == NK_ERR_INPUT ? 2 : 1;
}

void cli_txn_abort(void)
{
    sigset_t old;
    block_signals(&old);
    for (int i = 0; i < txn_count; i++)
        if (txn_live[i]) {
            unlink(txn_tmp[i]);
            txn_live[i] = 0;
        }
    txn_count = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

int cli_txn_commit(void)
{
    sigset_t old;
    int rc = 0, done = 0;
    const char *pause = getenv("NK_TXN_PAUSE"); /* tests: seconds with every temporary written */
    if (pause) sleep((unsigned)atoi(pause));
    block_signals(&old);
    for (int i = 0; i < txn_count && !rc; i++) {
        if (!txn_live[i]) continue;
        if (rename(txn_tmp[i], txn_final[i]) == 0) {
            txn_live[i] = 0;
            done = i + 1;
            continue;
        }
        fprintf(stderr, "nkern: error: %s: cannot rename %s to it: %s (check the directory)\n", txn_final[i], txn_tmp[i],
                strerror(errno));
        rc = 1;
    }
    if (rc) /* no partial set of the run's files: the ones renamed already go too */
        for (int i = 0; i < done; i++) unlink(txn_final[i]);
    sigprocmask(SIG_SETMASK, &old, NULL);
    cli_txn_abort(); /* the temporaries left, if any; resets the table */
    return rc;
}

void cli_txn_release(const char *tmp)
{
    for (int i = 0; i < txn_count; i++)
        if (txn_live[i] && !strcmp(txn_tmp[i], tmp)) txn_live[i] = 0;
}

int cli_check_out_dir(const char *opt, const char *path)
{
    char *copy = strdup(path);
    if (!copy) return cli_usage_error("out of memory");
    const char *dir = dirname(copy);
    struct stat sb;
    int rc = 0;
    if (stat(dir, &sb) != 0)
        rc = cli_usage_error("%s %s: the directory %s does not exist (create it first, or choose another path)", opt, path, dir);
    else if (!S_ISDIR(sb.st_mode))
        rc = cli_usage_error("%s %s: %s is not a directory (choose another path)", opt, path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = cli_usage_error("%s %s: the directory %s is not writable (choose another path)", opt, path, dir);
    else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        rc = cli_usage_error("%s %s: is a directory (give a file name)", opt, path);
    free(copy);
    return rc;
}

/* path's directory resolved (symbolic links, "..") plus its last component, into out */
static int resolved(const char *path, char *out, size_t cap)
{
    char *d = strdup(path), *b = strdup(path);
    int ok = 0;
    if (d && b) {
        char *dir = realpath(dirname(d), NULL);
        if (dir) {
            ok = snprintf(out, cap, "%s/%s", dir, basename(b)) < (int)cap;
            free(dir);
        }
    }
    free(d);
    free(b);
    return ok;
}

int cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ra[PATH_MAX + 256], rb[PATH_MAX + 256];
    if (resolved(a, ra, sizeof ra) && resolved(b, rb, sizeof rb)) return !strcmp(ra, rb);
    return !strcmp(a, b);
}
