# Sourced by bench/gpu_run.sh and bench/cpu_kernel_check.sh from the repository root. On a machine
# with no network (the GPU machine) Deno, its npm cache, the llama.cpp source and its vocabularies
# come from .device/ (bench/pack_device.sh makes them); elsewhere nothing changes.
if ! command -v deno >/dev/null 2>&1; then
  [ -x /tmp/deno ] || { xz -dc .device/deno.xz >/tmp/deno && chmod +x /tmp/deno; }
  export PATH=/tmp:$PATH
fi
if [ -f .device/deno_dir.tar.xz ] && [ -z "${DENO_DIR:-}" ]; then
  # Deno's npm cache for every package in deno.lock (the machine cannot download them).
  [ -d /tmp/deno_dir ] || { mkdir -p /tmp/deno_dir && tar -xJf .device/deno_dir.tar.xz -C /tmp/deno_dir; }
  export DENO_DIR=/tmp/deno_dir
fi
export DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
if [ -d /usr/local/cuda/bin ]; then
  export PATH=/usr/local/cuda/bin:$PATH
  export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
if [ ! -f .cache/llama.cpp-v0.5.0/.shimmy-source-ok ] && [ -f .device/llama-src.tar.xz ]; then
  mkdir -p .cache
  tar -xJf .device/llama-src.tar.xz -C .cache
  tar -xJf .device/llama-vocab.tar.xz -C .cache
  touch .cache/llama.cpp-v0.5.0/.shimmy-source-ok
elif [ ! -d .cache/llama.cpp-v0.5.0/models ] && [ -f .device/llama-vocab.tar.xz ]; then
  # The vocabularies alone are enough to generate the benchmark models.
  mkdir -p .cache
  tar -xJf .device/llama-vocab.tar.xz -C .cache
fi
