// prompt_probe: what a burst's prompt step costs through libllama, in the context layouts Shimmy
// uses: k sequences of p tokens each (or p to p+pv, at random) decoded in one llama_decode after an
// idle spell, then g one-token steps of all k sequences.
//
//   cc -O2 bench/prompt_probe.c -I<llama>/include -I<llama>/ggml/include -L<lib>
//      -lllama -lggml -lggml-base -Wl,-rpath,<lib> -o prompt_probe
//   ./prompt_probe -m MODEL [-t 4] [-c 32768] [-np 32] [-kvu 0|1] [-ds 0|1] [-k 8] [-p 11]
//        [-pv 0] [-idle 100] [-r 15] [-g 4]
//
// -np sequences (slots) share a context of -c cells, with a KV stream per sequence (-kvu 0) or one
// unified cache (-kvu 1); -ds 1 attaches a greedy chain to every sequence so that tokens are
// sampled on the device, as Shimmy does on a GPU. Each rep clears the cache, sleeps -idle ms, and
// times the prompt step: llama_decode (on a GPU: building the graphs and queueing the work), the
// llama_synchronize after it, and the first read of an output (llama.cpp reorders its output rows
// there when the micro-batches made them come out of order). Then the first generation step (a
// new shape again) and the mean of the later ones. Prints medians over -r reps (after 2 warm-ups).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llama.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *data) {
  (void)data;
  if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
  const char *model;
  int threads, n_ctx, n_seq_max, kvu, ds, k, p, pv, idle_ms, reps, gen;
} opts_t;

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s -m MODEL [-t N] [-c N_CTX] [-np N_SEQ_MAX] [-kvu 0|1] [-ds 0|1] [-k N] "
          "[-p N] [-pv N] [-idle MS] [-r N] [-g N]\n",
          argv0);
  exit(2);
}

static opts_t parse(int argc, char **argv) {
  opts_t o = {NULL, 4, 32768, 32, 0, 0, 8, 11, 0, 100, 15, 4};
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage(argv[0]);
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "-m")) o.model = v;
    else if (!strcmp(a, "-t")) o.threads = atoi(v);
    else if (!strcmp(a, "-c")) o.n_ctx = atoi(v);
    else if (!strcmp(a, "-np")) o.n_seq_max = atoi(v);
    else if (!strcmp(a, "-kvu")) o.kvu = atoi(v);
    else if (!strcmp(a, "-ds")) o.ds = atoi(v);
    else if (!strcmp(a, "-k")) o.k = atoi(v);
    else if (!strcmp(a, "-p")) o.p = atoi(v);
    else if (!strcmp(a, "-pv")) o.pv = atoi(v);
    else if (!strcmp(a, "-idle")) o.idle_ms = atoi(v);
    else if (!strcmp(a, "-r")) o.reps = atoi(v);
    else if (!strcmp(a, "-g")) o.gen = atoi(v);
    else usage(argv[0]);
  }
  if (!o.model || o.k < 1 || o.k > o.n_seq_max || o.p < 1 || o.reps < 1 || o.gen < 1) usage(argv[0]);
  return o;
}

// Sets the batch to one token at `pos` for sequence `seq`, appended.
static void add_token(struct llama_batch *b, llama_token token, int pos, int seq, int output) {
  int j = b->n_tokens++;
  b->token[j] = token;
  b->pos[j] = pos;
  b->n_seq_id[j] = 1;
  b->seq_id[j][0] = seq;
  b->logits[j] = output;
}

int main(int argc, char **argv) {
  opts_t o = parse(argc, argv);
  if (!getenv("PROMPT_PROBE_VERBOSE")) llama_log_set(quiet_log, NULL);
  ggml_backend_load_all();
  llama_backend_init();

  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 999;
  struct llama_model *model = llama_model_load_from_file(o.model, mp);
  if (!model) { fprintf(stderr, "cannot load %s\n", o.model); return 1; }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = o.n_ctx;
  cp.n_batch = 2048;
  cp.n_seq_max = o.n_seq_max;
  cp.n_threads = o.threads;
  cp.n_threads_batch = o.threads;
  cp.kv_unified = o.kvu != 0;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }

  struct llama_sampler **chains = calloc(o.n_seq_max, sizeof *chains);
  for (int s = 0; o.ds && s < o.n_seq_max; s++) {
    chains[s] = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(chains[s], llama_sampler_init_greedy());
    if (!llama_set_sampler(ctx, s, chains[s])) {
      fprintf(stderr, "llama_set_sampler refused the greedy chain\n");
      return 1;
    }
  }

  struct llama_batch b = llama_batch_init(o.k * (o.p + o.pv), 0, 1);
  int *len = calloc(o.k, sizeof *len);
  double *decode = calloc(o.reps, sizeof(double)), *sync = calloc(o.reps, sizeof(double)),
         *first_read = calloc(o.reps, sizeof(double)), *gen1 = calloc(o.reps, sizeof(double)),
         *gen1_sync = calloc(o.reps, sizeof(double)), *later = calloc(o.reps, sizeof(double)),
         *later_sync = calloc(o.reps, sizeof(double));

  for (int rep = -2; rep < o.reps; rep++) {
    llama_memory_clear(llama_get_memory(ctx), true);
    if (o.idle_ms) usleep(o.idle_ms * 1000);
    b.n_tokens = 0;
    for (int s = 0; s < o.k; s++) {
      len[s] = o.p + (o.pv ? rand() % (o.pv + 1) : 0);
      for (int i = 0; i < len[s]; i++) add_token(&b, rand() % n_vocab, i, s, i == len[s] - 1);
    }
    double t0 = now_us();
    if (llama_decode(ctx, b)) { fprintf(stderr, "prompt decode failed\n"); return 1; }
    double t1 = now_us();
    llama_synchronize(ctx);
    double t2 = now_us();
    if (o.ds) llama_get_sampled_token_ith(ctx, len[0] - 1);
    else llama_get_logits_ith(ctx, len[0] - 1);
    double t3 = now_us();

    double later_decode = 0, later_wait = 0;
    for (int step = 0; step < o.gen; step++) {
      b.n_tokens = 0;
      for (int s = 0; s < o.k; s++) add_token(&b, rand() % n_vocab, len[s] + step, s, 1);
      double a0 = now_us();
      if (llama_decode(ctx, b)) { fprintf(stderr, "generation decode failed\n"); return 1; }
      double a1 = now_us();
      llama_synchronize(ctx);
      if (o.ds) llama_get_sampled_token_ith(ctx, 0);
      double a2 = now_us();
      if (step == 0 && rep >= 0) {
        gen1[rep] = a1 - a0;
        gen1_sync[rep] = a2 - a1;
      } else if (step > 0) {
        later_decode += a1 - a0;
        later_wait += a2 - a1;
      }
    }
    if (rep >= 0) {
      decode[rep] = t1 - t0;
      sync[rep] = t2 - t1;
      first_read[rep] = t3 - t2;
      later[rep] = o.gen > 1 ? later_decode / (o.gen - 1) : 0;
      later_sync[rep] = o.gen > 1 ? later_wait / (o.gen - 1) : 0;
    }
  }

  printf("prompt_probe np=%d kvu=%d ds=%d k=%d p=%d pv=%d idle=%d t=%d: prompt decode %.0f + sync %.0f "
         "+ first read %.0f us | gen1 %.0f + %.0f | later gen %.0f + %.0f (medians of %d, us)\n",
         o.n_seq_max, o.kvu, o.ds, o.k, o.p, o.pv, o.idle_ms, o.threads, median(decode, o.reps),
         median(sync, o.reps), median(first_read, o.reps), median(gen1, o.reps),
         median(gen1_sync, o.reps), median(later, o.reps), median(later_sync, o.reps), o.reps);

  llama_batch_free(b);
  llama_free(ctx);  // the context detaches its sampler chains; free them afterwards
  for (int s = 0; o.ds && s < o.n_seq_max; s++) llama_sampler_free(chains[s]);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
