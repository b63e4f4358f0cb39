// decode_probe: single-stream 1-token decode speed through libllama, with the knobs that differ
// between llama-bench and Shimmy's engine, to find which one costs host time in llama_decode.
//
//   cc -O2 bench/decode_probe.c -I<llama>/include -I<llama>/ggml/include -L<lib>
//      -lllama -lggml -lggml-base -lpthread -Wl,-rpath,<lib> -o decode_probe
//   ./decode_probe -m MODEL [-t 4] [-c 640] [-np 1] [-kvu 0|1] [-fa -1|0|1] [-pool 0|1]
//        [-batch get_one|explicit] [-ds 0|1] [-sync 0|1] [-hop 0|1|2|3] [-p 32] [-n 128] [-r 3]
//        [-b 2048] [-ngl 999] [-read 0|1] [-pin 0|1]
//
// Each rep clears the KV cache, decodes a random prompt of -p tokens in one batch, then -n
// single-token steps feeding back the greedy token. One warm-up rep, then -r timed reps; prints
// the median tokens/s over the reps and the mean µs per step spent inside llama_decode, inside
// llama_synchronize, reading the token (logits + CPU argmax, or the device-sampled token), and
// the rest (loop overhead, and with -hop 1 the hand-off to and from the worker thread).
//
// -hop 1 runs each step's llama_decode (+ llama_synchronize with -sync 1) on the next of 4
// worker pthreads, round-robin, handing off with a mutex/condvar; the caller sleeps on a condvar
// until it is done, as Deno's nonblocking FFI calls run on a pool thread while the event loop
// waits. The token is then read on the calling thread, as Shimmy does. -hop 2 calls llama_decode
// on the calling thread and only llama_synchronize on a worker. -hop 3 is -hop 1 with always the
// same worker (a dedicated decode thread).
//
// -pin 1 (with -pool) pins as Shimmy does: a CPU per thread, the pool paused before each decode so
// that ggml pins the thread that calls next (with -hop 1, the four workers in turn).
//
// -read 0 reads no token at all and feeds random tokens (as llama-bench's tg test does; it still
// makes the last token's logits, but never waits for or reads them). -pool 1 sets the pool's
// poll level to 0 when it has a thread per core, as Shimmy does; -pool 2 keeps ggml's default
// poll level (50, as llama-bench's pool has). -pool 0 attaches no pool: ggml then starts and
// joins its threads for every graph, as llama-server does.
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "llama.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// ---- options ---------------------------------------------------------------------------------
typedef struct {
  const char *model;
  int threads, n_ctx, n_seq_max, kvu, fa, pool, explicit_batch, ds, sync, hop;
  int n_prompt, n_gen, reps, n_batch, ngl, read, pin;
} opts_t;

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s -m MODEL [-t N] [-c N_CTX] [-np N_SEQ_MAX] [-kvu 0|1] [-fa -1|0|1] "
          "[-pool 0|1] [-batch get_one|explicit] [-ds 0|1] [-sync 0|1] [-hop 0|1|2|3] [-p N] [-n N] "
          "[-r N] [-b N_BATCH] [-ngl N] [-read 0|1] [-pin 0|1]\n",
          argv0);
  exit(2);
}

static opts_t parse(int argc, char **argv) {
  opts_t o = {NULL, 4, 640, 1, 0, -1, 0, 0, 0, 0, 0, 32, 128, 3, 2048, 999, 1, 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char *v = argv[++i];
    if (!strcmp(a, "-m")) o.model = v;
    else if (!strcmp(a, "-t")) o.threads = atoi(v);
    else if (!strcmp(a, "-c")) o.n_ctx = atoi(v);
    else if (!strcmp(a, "-np")) o.n_seq_max = atoi(v);
    else if (!strcmp(a, "-kvu")) o.kvu = atoi(v);
    else if (!strcmp(a, "-fa")) o.fa = atoi(v);
    else if (!strcmp(a, "-pool")) o.pool = atoi(v);
    else if (!strcmp(a, "-batch")) {
      if (!strcmp(v, "explicit")) o.explicit_batch = 1;
      else if (!strcmp(v, "get_one")) o.explicit_batch = 0;
      else usage(argv[0]);
    } else if (!strcmp(a, "-ds")) o.ds = atoi(v);
    else if (!strcmp(a, "-sync")) o.sync = atoi(v);
    else if (!strcmp(a, "-hop")) o.hop = atoi(v);
    else if (!strcmp(a, "-p")) o.n_prompt = atoi(v);
    else if (!strcmp(a, "-n")) o.n_gen = atoi(v);
    else if (!strcmp(a, "-r")) o.reps = atoi(v);
    else if (!strcmp(a, "-b")) o.n_batch = atoi(v);
    else if (!strcmp(a, "-ngl")) o.ngl = atoi(v);
    else if (!strcmp(a, "-read")) o.read = atoi(v);
    else if (!strcmp(a, "-pin")) o.pin = atoi(v);
    else usage(argv[0]);
  }
  if (!o.model || o.n_gen < 1 || o.reps < 1 || o.n_prompt < 1) usage(argv[0]);
  return o;
}

// ---- hop workers -----------------------------------------------------------------------------
#define N_WORKERS 4

typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int has_job, done, quit;
  // job
  struct llama_context *ctx;
  struct llama_batch batch;
  int decode, sync;
  // result
  int rc;
  double t_decode, t_sync;
} worker_t;

static worker_t workers[N_WORKERS];

static void run_step(struct llama_context *ctx, struct llama_batch batch, int decode, int sync,
                     int *rc, double *t_decode, double *t_sync) {
  double t0 = now_us();
  *rc = decode ? llama_decode(ctx, batch) : 0;
  double t1 = now_us();
  if (sync) llama_synchronize(ctx);
  double t2 = now_us();
  *t_decode = t1 - t0;
  *t_sync = t2 - t1;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->has_job && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
    if (w->quit) break;
    w->has_job = 0;
    pthread_mutex_unlock(&w->mu);
    int rc;
    double td, ts;
    run_step(w->ctx, w->batch, w->decode, w->sync, &rc, &td, &ts);
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->t_decode = td;
    w->t_sync = ts;
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void workers_start(void) {
  for (int i = 0; i < N_WORKERS; i++) {
    worker_t *w = &workers[i];
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_create(&w->thread, NULL, worker_main, w);
  }
}

static void workers_stop(void) {
  for (int i = 0; i < N_WORKERS; i++) {
    worker_t *w = &workers[i];
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
  }
}

// Runs one step on worker `k` and waits (asleep) for it.
static void hop_step(int k, struct llama_context *ctx, struct llama_batch batch, int decode,
                     int sync, int *rc, double *t_decode, double *t_sync) {
  worker_t *w = &workers[k % N_WORKERS];
  pthread_mutex_lock(&w->mu);
  w->ctx = ctx;
  w->batch = batch;
  w->decode = decode;
  w->sync = sync;
  w->done = 0;
  w->has_job = 1;
  pthread_cond_broadcast(&w->cv);
  while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
  *rc = w->rc;
  *t_decode = w->t_decode;
  *t_sync = w->t_sync;
  pthread_mutex_unlock(&w->mu);
}

// ---- main ------------------------------------------------------------------------------------
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *data) {
  (void)data;
  if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

int main(int argc, char **argv) {
  opts_t o = parse(argc, argv);
  if (!getenv("DECODE_PROBE_VERBOSE")) llama_log_set(quiet_log, NULL);
  ggml_backend_load_all();
  llama_backend_init();

  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = o.ngl;
  struct llama_model *model = llama_model_load_from_file(o.model, mp);
  if (!model) { fprintf(stderr, "cannot load %s\n", o.model); return 1; }
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);

  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = o.n_ctx;
  cp.n_batch = o.n_batch;
  cp.n_seq_max = o.n_seq_max;
  cp.n_threads = o.threads;
  cp.n_threads_batch = o.threads;
  cp.kv_unified = o.kvu != 0;
  cp.flash_attn_type = o.fa < 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO
                       : o.fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                              : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }

  // A ggml CPU threadpool, found through the CPU backend's registry as Shimmy does.
  struct ggml_threadpool *pool = NULL;
  void (*pool_free)(struct ggml_threadpool *) = NULL;
  if (o.pool) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = cpu ? ggml_backend_dev_backend_reg(cpu) : NULL;
    struct ggml_threadpool *(*pool_new)(struct ggml_threadpool_params *) =
        reg ? ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new") : NULL;
    pool_free = reg ? ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free") : NULL;
    if (!pool_new || !pool_free) { fprintf(stderr, "no ggml_threadpool_new\n"); return 1; }
    struct ggml_threadpool_params tpp;
    ggml_threadpool_params_init(&tpp, o.threads);
    if (o.pool == 1 && o.threads >= sysconf(_SC_NPROCESSORS_ONLN)) tpp.poll = 0;
    if (o.pin) {
      // Shimmy's pinning (src/ffi/core_pinning.ts): a CPU per thread, the pool created paused,
      // and paused again before each decode, so that ggml pins whichever thread calls next.
      for (int c = 0; c < o.threads && c < GGML_MAX_N_THREADS; c++) tpp.cpumask[c] = true;
      tpp.strict_cpu = true;
      tpp.paused = true;
    }
    pool = pool_new(&tpp);
    if (!pool) { fprintf(stderr, "ggml_threadpool_new failed\n"); return 1; }
    llama_attach_threadpool(ctx, pool, NULL);
  }

  struct llama_sampler *chain = NULL;
  if (o.ds) {
    struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
    sp.no_perf = true;
    chain = llama_sampler_chain_init(sp);
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    if (!llama_set_sampler(ctx, 0, chain)) {
      fprintf(stderr, "llama_set_sampler refused the greedy chain (falling back is not allowed)\n");
      return 1;
    }
  }

  if (o.hop) workers_start();

  struct llama_batch one = llama_batch_init(1, 0, 1);
  llama_token *prompt = malloc(sizeof(llama_token) * o.n_prompt);
  double *rates = malloc(sizeof(double) * o.reps);
  double sum_decode = 0, sum_sync = 0, sum_read = 0, sum_step = 0;
  long n_steps = 0;
  int step_counter = 0;

  for (int rep = -1; rep < o.reps; rep++) {
    llama_memory_clear(llama_get_memory(ctx), true);
    for (int i = 0; i < o.n_prompt; i++) prompt[i] = rng() % n_vocab;
    // The prompt, in one batch (not timed).
    if (o.explicit_batch) {
      struct llama_batch pb = llama_batch_init(o.n_prompt, 0, 1);
      for (int i = 0; i < o.n_prompt; i++) {
        pb.token[i] = prompt[i];
        pb.pos[i] = i;
        pb.n_seq_id[i] = 1;
        pb.seq_id[i][0] = 0;
        pb.logits[i] = i == o.n_prompt - 1;
      }
      pb.n_tokens = o.n_prompt;
      if (llama_decode(ctx, pb)) { fprintf(stderr, "prompt decode failed\n"); return 1; }
      llama_batch_free(pb);
    } else {
      if (llama_decode(ctx, llama_batch_get_one(prompt, o.n_prompt))) {
        fprintf(stderr, "prompt decode failed\n");
        return 1;
      }
    }
    llama_synchronize(ctx);
    llama_token tok = o.ds ? llama_get_sampled_token_ith(ctx, -1) : prompt[o.n_prompt - 1];
    if (tok < 0 || tok >= n_vocab) tok = rng() % n_vocab;

    double rd = 0, rs = 0, rr = 0;
    double t_start = now_us();
    for (int s = 0; s < o.n_gen; s++) {
      int pos = o.n_prompt + s;
      struct llama_batch b;
      llama_token tok_buf = tok;
      if (o.explicit_batch) {
        one.token[0] = tok;
        one.pos[0] = pos;
        one.n_seq_id[0] = 1;
        one.seq_id[0][0] = 0;
        one.logits[0] = 1;
        one.n_tokens = 1;
        b = one;
      } else {
        b = llama_batch_get_one(&tok_buf, 1);
      }
      int rc;
      double td, ts;
      if (o.pin && pool) ggml_threadpool_pause(pool);
      if (o.hop == 2) {
        // The decode here, the wait for the device on a worker (Shimmy with every layer on a GPU).
        double td_here, unused;
        run_step(ctx, b, 1, 0, &rc, &td_here, &unused);
        if (!rc) hop_step(step_counter++, ctx, b, 0, o.sync, &rc, &unused, &ts);
        td = td_here;
      } else if (o.hop) {
        hop_step(o.hop == 3 ? 0 : step_counter++, ctx, b, 1, o.sync, &rc, &td, &ts);
      } else {
        run_step(ctx, b, 1, o.sync, &rc, &td, &ts);
      }
      if (rc) { fprintf(stderr, "decode failed at step %d: %d\n", s, rc); return 1; }
      double t0 = now_us();
      if (!o.read) {
        tok = rng() % n_vocab;
      } else if (o.ds) {
        tok = llama_get_sampled_token_ith(ctx, -1);
      } else {
        const float *logits = llama_get_logits_ith(ctx, -1);
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
          if (logits[v] > logits[best]) best = v;
        tok = best;
      }
      if (tok < 0 || tok >= n_vocab) tok = rng() % n_vocab;
      rr += now_us() - t0;
      rd += td;
      rs += ts;
    }
    double elapsed = now_us() - t_start;
    if (rep >= 0) {
      rates[rep] = o.n_gen / (elapsed / 1e6);
      sum_decode += rd;
      sum_sync += rs;
      sum_read += rr;
      sum_step += elapsed;
      n_steps += o.n_gen;
    }
  }

  qsort(rates, o.reps, sizeof(double), cmp_double);
  double median = o.reps % 2 ? rates[o.reps / 2] : (rates[o.reps / 2 - 1] + rates[o.reps / 2]) / 2;
  double md = sum_decode / n_steps, ms = sum_sync / n_steps, mr = sum_read / n_steps,
         mt = sum_step / n_steps;
  printf("decode_probe t=%d c=%d np=%d kvu=%d fa=%d pool=%d batch=%s ds=%d sync=%d hop=%d "
         "read=%d b=%d p=%d n=%d r=%d: %.1f tok/s (median; min %.1f max %.1f) | per step %.1f us: "
         "decode %.1f, sync %.1f, read %.1f, rest %.1f\n",
         o.threads, o.n_ctx, o.n_seq_max, o.kvu, o.fa, o.pool,
         o.explicit_batch ? "explicit" : "get_one", o.ds, o.sync, o.hop, o.read, o.n_batch, o.n_prompt, o.n_gen,
         o.reps, median, rates[0], rates[o.reps - 1], mt, md, ms, mr, mt - md - ms - mr);
  fflush(stdout);

  if (o.hop) workers_stop();
  llama_batch_free(one);
  free(prompt);
  free(rates);
  llama_free(ctx);  // the context detaches its sampler chains; free the chain afterwards
  if (chain) llama_sampler_free(chain);
  if (pool) pool_free(pool);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
