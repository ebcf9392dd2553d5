/* cli.h -- the nkern command-line tool: a thin client of the public headers.
 * Each subcommand lives in cli/cmd_NAME.c as int cmd_NAME(int argc, char **argv), where
 * argv[0] is the subcommand name.  Exit status: 0 ok, 2 bad usage or input, 1 run failure. */
#ifndef NKERN_CLI_H
#define NKERN_CLI_H
#include "nkern.h"
#include "nk_dist.h"
#include "nk_synth.h"

#include <stdio.h>

int cmd_kernel(int argc, char **argv);
int cmd_arch(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_theory(int argc, char **argv);
int cmd_spectrum(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_curve(int argc, char **argv);
int cmd_lkr(int argc, char **argv);      /* cmd_finite.c */
int cmd_langevin(int argc, char **argv);
int cmd_mc(int argc, char **argv);

/* Plots (cli/plot.c).  cli_plot_check: 0 if path ends in .svg or .png, else a usage error (2).
 * cli_gnuplot_sized: pipe script to gnuplot with the terminal and output set from the extension;
 * 0 on success, 1 with a message if gnuplot is missing or fails. */
int cli_plot_check(const char *path);
int cli_have_gnuplot(void);
int cli_gnuplot_sized(const char *out, const char *script, int width, int height);
/* A gnuplot script written to memory: cli_script_open gives the stream (NULL, with the error
 * printed, if out of memory); cli_script_plot closes it, runs it as cli_gnuplot_sized and frees it. */
typedef struct {
    char *text;
    size_t len;
    FILE *f;
} cli_script;
FILE *cli_script_open(cli_script *sc);
int cli_script_plot(cli_script *sc, const char *out, int width, int height);
/* "LO:HI:N" -> N evenly spaced values (N >= 1; N == 1 gives LO).  0 or 2 (usage error). */
int cli_parse_range(const char *opt, const char *s, double *lo, double *hi, long *n);
/* "1,2,4,8" -> up to max positive integers. */
int cli_parse_int_list(const char *opt, const char *s, long *vals, int max, int *n);
/* Handle a shared architecture option (--w-std, --b-std, --param, --width, --quad) at argv[*i]:
 * -1 if argv[*i] is not one, 0 when consumed (advancing *i past its value), 2 on error. */
int cli_arch_option(int argc, char **argv, int *i, nk_arch_opts *o);

/* An option given twice is an error naming it (the second would silently win), except curve's
 * --arch, which takes one spec per curve: 0, or the error printed and 2. */
int cli_reject_repeats(int argc, char **argv);

/* Print "nkern: error: MESSAGE" to stderr and return the exit status for st. */
int cli_fail(nk_status st, const nk_error *err);
/* Print "nkern: error: ..." for a usage problem and return 2. */
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Parse helpers: return 0 on success, print an error naming the option and return 2. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *opt, const char *s, double *out);
/* --precision f64|f32: the precision of the convolutional stack (nk_kernel_opts.f32). */
int cli_parse_precision(const char *opt, const char *s, int *f32);
/* Read a data file by extension: .npy, IDX (.gz or -ubyte).  n_max > 0 keeps the first
 * n_max samples. */
int cli_read_data(const char *path, size_t n_max, nk_array *out);
/* Read a .npy input (any name): an unreadable file, a NaN, Inf or |value| > 1e150 is an error
 * naming the file and position (exit status 2). */
int cli_read_npy(const char *path, nk_array *out);


/* `nkern kernel --checkpoint DIR` (checkpoint.c): the kernel in strips of rows saved to DIR as
 * they finish; a run started again with the same command computes only the missing strips.
 * Returns an exit status; K / T (as requested by ko->get) are allocated on success. */
int cli_kernel_checkpointed(const nk_plan *plan, const char *spec, const nk_array *x1, const nk_array *x2,
                            const nk_kernel_opts *ko, const char *dir, nk_array *K, nk_array *T, int quiet);
/* `nkern kernel --journal` (cmd_kernel.c): tiles straight into OUT.part with the journal
 * OUT.journal (nk_kernel_journaled); the outputs are renamed into place on success. */
int cli_kernel_journaled(const nk_plan *plan, const char *spec, const nk_array *x1, const nk_array *x2,
                         const nk_kernel_opts *ko, size_t tile, const char *out, int out_f32, int quiet);
/* Where `classify --journal DIR` computes its kernels: NULL, in this process (nk_kernel_journaled);
 * `nkern-mpi classify` gives one over the MPI ranks.  kernel() writes out[0] / out[1] (as ko->get
 * asks) with the journal at jpath, leaving the journal, as nk_kernel_journaled does; plan was made
 * from spec with the options ao (other ranks make theirs from them); quiet: no report on stderr. */
typedef struct {
    nk_status (*kernel)(void *ctx, const nk_plan *plan, const char *spec, const nk_arch_opts *ao, const nk_array *x1,
                        const nk_array *x2, const nk_kernel_opts *ko, size_t tile, const char *const out[2],
                        const char *jpath, int quiet, nk_journal_stats *js, nk_error *err);
    void *ctx;
    const char *cmd;    /* the command, in messages */
    const char *help;   /* printed before classify's --help */
} cli_classify_backend;
/* `nkern classify` (cmd_classify.c) with its kernels computed through be (NULL: this process);
 * be requires --journal. */
int cli_classify(int argc, char **argv, const cli_classify_backend *be);
/* The spec with the architecture options (--w-std, ...) as one text: what a journal must match. */
void cli_run_spec(char *buf, size_t cap, const char *spec, const nk_arch_opts *o);
/* The output paths of --out for --get (NK_GET_*): paths[0] NNGP, paths[1] NTK ("" if not
 * written), and the journal's path.  0, or prints the error and returns 2. */
int cli_output_paths(const char *out, int get, char paths[2][4096], char *journal, size_t cap);
/* Remove the strips and the run record of a finished checkpoint directory, then the directory. */
int cli_checkpoint_remove(const char *dir);

/* An output file written through a temporary name beside it and renamed into place when
 * complete (removed on failure), so that no half-written file is ever left under the name. */
typedef struct {
    FILE *f;
    const char *path;
    char tmp[4224];
} cli_out;
int cli_out_open(cli_out *o, const char *path);   /* 0, or prints the error and returns 1 */
int cli_out_close(cli_out *o);                    /* 0, or prints the error and returns 1 */

/* Output transactions (txn.c): files written under registered temporary names, renamed into
 * place together by cli_txn_commit, removed by cli_txn_abort and on SIGINT/SIGTERM/SIGHUP.
 * cli_txn_add: the temporary name to write path's content to (NULL: error printed).
 * cli_txn_write_npy: an array into a registered temporary (0, or the error printed, every
 * temporary of the transaction removed, and the exit status).  cli_txn_commit: 0, or 1 with
 * the error printed and none of the transaction's files left.  cli_txn_release: tmp was
 * renamed or removed by its owner (cli_out). */
const char *cli_txn_add(const char *path);
int cli_txn_write_npy(const char *path, const nk_array *a, int as_f32);
int cli_txn_commit(void);
void cli_txn_abort(void);
void cli_txn_release(const char *tmp);
/* Before any computation: path's directory exists and is writable, and path is not a
 * directory.  0, or the error naming the option printed and 2. */
int cli_check_out_dir(const char *opt, const char *path);
/* 1 if the two paths name the same file (same directory after resolving links, same name). */
int cli_same_file(const char *a, const char *b);

/* Parse a synth target (--target) for m patches of dimension n0 with noise variance and
 * direction seed (cmd_synth.c); 0, or prints the error and returns the exit status. */
int cli_synth_target(const char *target, long m, long n0, double noise, long seed, nk_synth_target *t);

/* The inputs every kernel-computing command takes (nkern kernel, nkern mc, nkern-mpi kernel):
 * --arch --x1 --x2 --out --get (paths / names), --threads --n1 --n2, --f32 --quiet --progress,
 * and the architecture options of cli_arch_option. */
typedef struct {
    nk_arch_opts ao;
    const char *arch, *x1, *x2, *out, *get;
    long threads, n1, n2;
    int f32, quiet, force;   /* force: --progress */
    int getv;                /* NK_GET_* of get, set by cli_kernel_inputs_check */
} cli_kernel_inputs;
void cli_kernel_inputs_default(cli_kernel_inputs *k);   /* all unset, --get nngp, default ao */
/* One of those options at argv[*i]: -1 if it is not one or its value is missing (the caller's
 * "unknown option or missing value" error), 0 when consumed (*i past its value), 2 on error. */
int cli_kernel_input_option(int argc, char **argv, int *i, cli_kernel_inputs *k);
/* After the options: "CMD: missing --arch SPEC (e.g. --arch 'ARCH_EXAMPLE')", missing --x1,
 * missing --out (only if out_hint is not NULL; out_hint is appended to the message), a bad
 * --get; sets k->getv.  0, or the error printed and 2. */
int cli_kernel_inputs_check(cli_kernel_inputs *k, const char *cmd, const char *arch_example, const char *out_hint);
/* The architecture (with k->ao) and the data of k, checked to share a sample shape, and the plan:
 * 0, or the error printed and its exit status with what was made so far left in the outputs
 * for the caller to free (*arch NULL: nothing was). */
int cli_kernel_inputs_load(const cli_kernel_inputs *k, nk_arch **arch, nk_plan **plan,
                           nk_array *x1, nk_array *x2);
/* --time "T1,T2,inf": up to max non-negative times appended to times[*n]; 0 or 2. */
int cli_parse_times(const char *s, double *times, size_t max, size_t *n);
/* Monotonic clock in seconds. */
double cli_seconds(void);

/* A progress line on stderr: units done (entries unless set after init), rate and time left;
 * quiet in pipes unless forced. */
typedef struct {
    const char *what, *unit;
    int enabled;
    double start, last;
    size_t resumed;                 /* units done before this run (resumed): not in the rate */
    size_t tiles_done, tiles_total; /* shown first when tiles_total > 0 (tiled and MPI runs) */
} cli_progress;
void cli_progress_init(cli_progress *pr, const char *what, int enabled);
/* "12.3 s", "4 min 05 s", "47 h 12 min" */
void cli_format_duration(double seconds, char *buf, size_t n);
/* Mean square of an array's values: the time model's input variance (nk_plan_seconds). */
double cli_mean_square(const nk_array *x);
/* Before a run: a warning on stderr if the time model puts it above an hour. */
void cli_warn_long_run(const char *what, const nk_plan *p, size_t n1, size_t n2, int threads, double input_ms, int f32,
                       int shift);
int cli_progress_cb(void *ctx, size_t done, size_t total);
/* "rank 0: 12 tiles in 30.1 s, rank 1: ...; busiest/mean 1.04" on stderr: a tiled run's load balance. */
void cli_print_rank_loads(const char *what, const unsigned long long *tiles, const double *seconds, int ranks);
int cli_progress_default(int quiet, int force);
#endif
