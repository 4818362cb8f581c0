/* Monotonic time, for timing runs, steps and progress lines. */
#ifndef CACHEBENCH_CLOCK_H
#define CACHEBENCH_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): only differences mean anything. */
double clock_seconds(void);

#endif
