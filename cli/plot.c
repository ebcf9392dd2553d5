/* plot.c -- plots through gnuplot (a pipe to the `gnuplot` program, Debian gnuplot-nox). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int cli_plot_check(const char *path)
{
    if (!path) return 0;
    if (!ends_with(path, ".svg") && !ends_with(path, ".png"))
        return cli_usage_error("--plot: '%s' (the file name must end in .svg or .png)", path);
    return cli_check_out_dir("--plot", path);
}

int cli_have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char buf[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + 9 < sizeof buf) {
            memcpy(buf, path, n);
            memcpy(buf + n, "/gnuplot", 9);
            if (access(buf, X_OK) == 0) return 1;
        }
        path += n;
        if (*path == ':') path++;
    }
    return 0;
}

FILE *cli_script_open(cli_script *sc)
{
    sc->text = NULL;
    sc->len = 0;
    sc->f = open_memstream(&sc->text, &sc->len);
    if (!sc->f) cli_usage_error("out of memory");
    return sc->f;
}

int cli_script_plot(cli_script *sc, const char *out, int width, int height)
{
    fclose(sc->f);
    int rc = cli_gnuplot_sized(out, sc->text, width, height);
    free(sc->text);
    return rc;
}

int cli_gnuplot_sized(const char *out, const char *script, int width, int height)
{
    if (!cli_have_gnuplot()) {
        fprintf(stderr, "nkern: error: --plot %s: gnuplot is not installed (install the Debian package gnuplot-nox); "
                        "the data were written without the plot\n", out);
        return 1;
    }
    /* gnuplot writes a registered temporary, renamed into place once complete */
    const char *tmp = cli_txn_add(out);
    if (!tmp) return 1;
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "nkern: error: --plot %s: cannot start gnuplot\n", out);
        cli_txn_abort();
        return 1;
    }
    if (ends_with(out, ".svg")) fprintf(g, "set terminal svg size %d,%d dynamic enhanced font 'Helvetica,13' background rgb 'white'\n", width, height);
    else fprintf(g, "set terminal pngcairo size %d,%d enhanced font 'Helvetica,11'\n", width, height);
    fputs("set output '", g);
    for (const char *p = tmp; *p; p++) {
        if (*p == '\'') fputc('\'', g); /* gnuplot doubles a quote inside single quotes */
        fputc(*p, g);
    }
    fputs("'\n", g);
    fputs(script, g);
    fputs("\nset output\n", g);
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "nkern: error: --plot %s: gnuplot failed (status %d)\n", out, WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
        cli_txn_abort();
        return 1;
    }
    if (cli_txn_commit()) return 1;
    fprintf(stderr, "plot: wrote %s\n", out);
    return 0;
}
