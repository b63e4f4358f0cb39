#!/usr/bin/env bash
# Installs what scripts/build-libllama.sh needs on a CI runner for one flavour: Ninja, and the
# CUDA toolkit or the Vulkan SDK. Used by .github/workflows/release.yml and ci.yml.
#
# Usage: scripts/ci/toolchain.sh [cpu|cuda|vulkan|metal] [--dry-run]
#
#   --dry-run   print the commands instead of running them (what the tests check)
#
# Writes CUDA_PATH / VULKAN_SDK and PATH additions to $GITHUB_ENV / $GITHUB_PATH when set.
# Environment: SHIMMY_BUILD_OS overrides uname -s (tests).
set -euo pipefail

CUDA_VERSION=12.8.1
CUDA_SHORT=12.8
VULKAN_SDK_VERSION=1.4.313.0

gpu=cpu dry_run=0
for arg in "$@"; do
  if [ "$arg" = --dry-run ]; then dry_run=1; elif [ -n "$arg" ]; then gpu=$arg; fi
done
case "$gpu" in cpu|cuda|vulkan|metal|"") ;; *) echo "toolchain: unknown flavour $gpu" >&2; exit 1 ;; esac

run() {
  if [ "$dry_run" = 1 ]; then printf '%s\n' "$*"; else "$@"; fi
}
export_env() { # NAME VALUE
  if [ "$dry_run" = 1 ]; then echo "env $1=$2"; return; fi
  export "$1=$2"
  [ -n "${GITHUB_ENV:-}" ] && echo "$1=$2" >>"$GITHUB_ENV"
  return 0
}
add_path() {
  if [ "$dry_run" = 1 ]; then echo "path $1"; return; fi
  [ -n "${GITHUB_PATH:-}" ] && echo "$1" >>"$GITHUB_PATH"
  return 0
}
sudo_() { if [ "$(id -u)" = 0 ]; then run "$@"; else run sudo "$@"; fi; }

case "${SHIMMY_BUILD_OS:-$(uname -s)}" in
  Linux)
    sudo_ apt-get update -qq
    sudo_ apt-get install -y -qq cmake ninja-build g++ git curl
    case "$gpu" in
      cuda)
        run curl -fsSLo /tmp/cuda-keyring.deb \
          https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb
        sudo_ dpkg -i /tmp/cuda-keyring.deb
        sudo_ apt-get update -qq
        sudo_ apt-get install -y -qq "cuda-nvcc-${CUDA_SHORT/./-}" "cuda-cudart-dev-${CUDA_SHORT/./-}" \
          "libcublas-dev-${CUDA_SHORT/./-}"
        export_env CUDA_PATH "/usr/local/cuda-$CUDA_SHORT"
        add_path "/usr/local/cuda-$CUDA_SHORT/bin" ;;
      vulkan)
        # Ubuntu 22.04's Vulkan headers are too old for ggml; LunarG's SDK has headers and glslc.
        run curl -fsSLo /tmp/vulkansdk.tar.xz \
          "https://sdk.lunarg.com/sdk/download/$VULKAN_SDK_VERSION/linux/vulkansdk-linux-x86_64-$VULKAN_SDK_VERSION.tar.xz"
        run mkdir -p "$HOME/vulkan"
        run tar -xJf /tmp/vulkansdk.tar.xz -C "$HOME/vulkan"
        sudo_ apt-get install -y -qq libvulkan1
        export_env VULKAN_SDK "$HOME/vulkan/$VULKAN_SDK_VERSION/x86_64"
        add_path "$HOME/vulkan/$VULKAN_SDK_VERSION/x86_64/bin" ;;
    esac ;;
  Darwin)
    command -v ninja >/dev/null 2>&1 || run brew install ninja ;;
  MINGW*|MSYS*|CYGWIN*)
    # cmake and ninja come with the runner image; MSVC from the msvc-dev-cmd step.
    case "$gpu" in
      cuda)
        run curl -fsSLo "$RUNNER_TEMP/cuda.exe" \
          "https://developer.download.nvidia.com/compute/cuda/$CUDA_VERSION/network_installers/cuda_${CUDA_VERSION}_windows_network.exe"
        run "$RUNNER_TEMP/cuda.exe" -s "nvcc_$CUDA_SHORT" "cudart_$CUDA_SHORT" "cublas_$CUDA_SHORT" \
          "cublas_dev_$CUDA_SHORT" "visual_studio_integration_$CUDA_SHORT"
        cuda="C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v$CUDA_SHORT"
        export_env CUDA_PATH "$cuda"
        add_path "$cuda\\bin" ;;
      vulkan)
        run curl -fsSLo "$RUNNER_TEMP/vulkansdk.exe" \
          "https://sdk.lunarg.com/sdk/download/$VULKAN_SDK_VERSION/windows/vulkansdk-windows-X64-$VULKAN_SDK_VERSION.exe"
        run "$RUNNER_TEMP/vulkansdk.exe" --root "C:\\VulkanSDK\\$VULKAN_SDK_VERSION" \
          --accept-licenses --default-answer --confirm-command install
        export_env VULKAN_SDK "C:\\VulkanSDK\\$VULKAN_SDK_VERSION"
        add_path "C:\\VulkanSDK\\$VULKAN_SDK_VERSION\\Bin" ;;
    esac ;;
  *) echo "toolchain: unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
