#!/usr/bin/python3
"""asin_poly.py -- the arcsine polynomials of src/engine/plane.c (asin_c64, asin_c32), and their errors.

g(t) = asin(sqrt t) / sqrt t is fitted by a polynomial of degree n on [0, T] for the least
maximum relative error (Lawson's iteration: weighted least squares on 600 Chebyshev points, the
weights multiplied by the residuals each round), in 40 digits.  The coefficients are then rounded
to the working precision and evaluated by Horner's rule with one rounding per FMA, as the engine
does, against a 40-digit reference on 20,001 points of [0, T].

    float64: degree 9 on [0, sin^2(pi/8)]  (three sectors of the half circle)
    float32: degree 6 on [0, 0.5005]       (two sectors: x^2 <= 1/2, past it by the rounding
                                            of the sector test)

Run with Debian's python3 (mpmath); takes about half a minute.  Not part of the build.
"""
import struct
import sys

import mpmath as mp

mp.mp.dps = 40


def g(t):
    t = mp.mpf(t)
    return mp.asin(mp.sqrt(t)) / mp.sqrt(t) if t > 0 else mp.mpf(1)


def fit(T, deg, M=600, rounds=60):
    xs = [mp.mpf(T) / 2 * (1 - mp.cos(mp.pi * (i + mp.mpf(1) / 2) / M)) for i in range(M)]
    A = [[x ** j / g(x) for j in range(deg + 1)] for x in xs]
    w = [mp.mpf(1) / M] * M
    for _ in range(rounds):
        N = mp.matrix(deg + 1, deg + 1)
        b = mp.matrix(deg + 1, 1)
        for i in range(M):
            for j in range(deg + 1):
                b[j] += w[i] * A[i][j]
                for k in range(deg + 1):
                    N[j, k] += w[i] * A[i][j] * A[i][k]
        c = mp.lu_solve(N, b)
        r = [abs(mp.fsum(A[i][j] * c[j] for j in range(deg + 1)) - 1) for i in range(M)]
        s = mp.fsum(w[i] * r[i] for i in range(M))
        w = [w[i] * r[i] / s for i in range(M)]
    return [c[j] for j in range(deg, -1, -1)]   # highest first


def to_f32(x):
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def rounder(single):
    # float(mpf) rounds correctly to double; to float32 from there (a double rounding, which can
    # differ from the hardware's single rounding in rare ties: fine for an error estimate)
    return (lambda x: to_f32(x)) if single else (lambda x: float(x))


def horner_error(coefs, T, single, points=20001):
    rnd = rounder(single)
    cr = [rnd(c) for c in coefs]
    worst = 0
    for i in range(points):
        t = rnd(mp.mpf(T) * i / (points - 1))
        p = cr[0]
        for c in cr[1:]:
            p = rnd(mp.mpf(p) * t + c)   # one FMA: exact product and sum, one rounding
        worst = max(worst, abs(p / g(t) - 1))
    return cr, worst


def main():
    for name, T, deg, single in (("asin_c64", mp.sin(mp.pi / 8) ** 2, 9, False), ("asin_c32", 0.5005, 6, True)):
        c = fit(T, deg)
        cr, err = horner_error(c, T, single)
        suffix = "f" if single else ""
        print(f"/* degree {deg} on [0, {mp.nstr(T, 6)}]: max relative error {mp.nstr(err, 2)} */")
        print(f"static const {'float' if single else 'double'} {name}[{deg + 1}] = {{"
              + ", ".join(repr(v) + suffix for v in cr) + "};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
