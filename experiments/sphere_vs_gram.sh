#!/usr/bin/env bash
# Claim (Mercer / Nystrom; SCIENCE.md section 3): the eigenvalues of the Gram matrix K/n of n
# uniform points on S^{d-1} approach the analytic mu_k, each repeated N(d,k) times.  The
# analytic side comes from `nkern spectrum --sphere` (Gauss-Jacobi projection of k(t)); the
# empirical side from `nkern kernel` on the points and `nkern spectrum --kernel` (dsyevd).
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
N=${N:-1500}; D=${D:-3}; SPEC=${SPEC:-"b=0.5 dense relu dense"}
# uniform points on the sphere scaled to |x|^2 = D (so nkern's K0 = <x,x'>/D is the cosine)
perl -e '
    my ($f, $n, $d) = @ARGV; srand(11);
    my $hdr = "{\x27descr\x27: \x27<f8\x27, \x27fortran_order\x27: False, \x27shape\x27: ($n, $d), }";
    $hdr .= " " x ((64 - (10 + length($hdr) + 1) % 64) % 64) . "\n";
    open(my $fh, ">:raw", $f) or die; print $fh "\x93NUMPY\x01\x00" . pack("v", length($hdr)) . $hdr;
    for (1 .. $n) {
        my @x = map { sqrt(-2 * log(1 - rand())) * cos(6.283185307179586 * rand()) } 1 .. $d;
        my $r = 0; $r += $_ * $_ for @x; $r = sqrt($d / $r);
        print $fh pack("d<*", map { $_ * $r } @x);
    }' "$OUT/sphere_points.npy" $N $D
$NK kernel --arch "$SPEC" --x1 "$OUT/sphere_points.npy" --get ntk --out "$OUT/sphere_gram.npy" --quiet
$NK spectrum --kernel "$OUT/sphere_gram.npy" --out "$OUT/sphere_gram_eig.tsv" --plot "$OUT/sphere_gram_eig.svg" >/dev/null
$NK spectrum --sphere --arch "$SPEC" --dim $D --kmax 12 > "$OUT/sphere_mu.tsv"
# sort the degrees by mu_k, then average the next N(d,k) empirical eigenvalues / n
awk -v n=$N 'FNR == NR { if (!/^#/) { k[++m] = $1; N[m] = $2; mu[m] = $3 } next }
     !/^#/ { e[$1] = $2 / n }
     END {
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (mu[j] > mu[i]) {
            t = mu[i]; mu[i] = mu[j]; mu[j] = t; t = k[i]; k[i] = k[j]; k[j] = t; t = N[i]; N[i] = N[j]; N[j] = t }
        printf "%-6s %-6s %-9s %-14s %-14s %s\n", "degree", "N(d,k)", "ranks", "analytic mu_k", "empirical", "rel.err"
        pos = 0
        for (i = 1; i <= 6; i++) {
            s = 0; for (r = pos + 1; r <= pos + N[i]; r++) s += e[r]; s /= N[i]
            printf "%-6d %-6d %4d-%-4d %-14.6g %-14.6g %.4f\n", k[i], N[i], pos + 1, pos + N[i], mu[i], s, (s - mu[i]) / mu[i]
            pos += N[i]
        }
        printf "expected sampling error ~ 1/sqrt(n) = %.3f\n", 1 / sqrt(n)
     }' "$OUT/sphere_mu.tsv" "$OUT/sphere_gram_eig.tsv"
