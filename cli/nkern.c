/* nkern.c -- the command-line tool: dispatch to subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"kernel", cmd_kernel, "NNGP/NTK kernel matrices of an architecture on data"},
    {"arch", cmd_arch, "layers, shapes, covariance modes, memory and flops of a spec"},
    {"predict", cmd_predict, "NNGP posterior / NTK gradient-flow predictions from kernel .npy files"},
    {"classify", cmd_classify, "kernel regression classifier: data, kernels, validation, test accuracy"},
    {"theory", cmd_theory, "mean field (q*, c*, chi_1, depth scales), phase diagram, NTK spectrum vs depth"},
    {"spectrum", cmd_spectrum, "eigenvalues of a kernel matrix, of an MLP kernel on the sphere, of a CNN kernel on patches"},
    {"synth", cmd_synth, "samples on products of spheres with Gegenbauer product targets (X.npy, Y.npy)"},
    {"mc", cmd_mc, "Monte Carlo NNGP/NTK of finite random networks (empirical kernels, backward pass)"},
    {"curve", cmd_curve, "measured vs eigenlearning-predicted learning curves of kernel regression on synth data"},
    {"lkr", cmd_lkr, "finite-width theory: saddle-point renormalized kernel Q, predictor and test loss vs width"},
    {"langevin", cmd_langevin, "Langevin sampling of a finite one-hidden-layer network's posterior: test loss vs theory"},
};

static void usage(FILE *f)
{
    fprintf(f, "nkern %s -- exact infinite-width NNGP and NTK kernels\n\nusage: nkern COMMAND [OPTIONS]\n\ncommands:\n", NK_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'nkern COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("nkern %s\n", NK_VERSION); return 0; }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name))
            return cli_reject_repeats(argc - 1, argv + 1) ? 2 : commands[i].fn(argc - 1, argv + 1);
    usage(stderr);
    return cli_usage_error("unknown command '%s'", argv[1]);
}
