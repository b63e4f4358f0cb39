# Installs the Shimmy executable for this Windows machine from a GitHub release.
#
# Usage: irm https://github.com/OWNER/REPO/releases/latest/download/install.ps1 | iex
#    or: .\install.ps1 [-Flavour auto|cpu|cuda|vulkan] [-Version vX.Y.Z] [-Dir DIR]
#
#   -Flavour  auto (default) picks cuda when nvidia-smi sees a GPU, else vulkan when vulkaninfo
#             lists a GPU, else cpu
#   -Version  a release tag (default: the latest release)
#   -Dir      install folder (default: %LOCALAPPDATA%\Programs\shimmy), added to the user PATH
#
# The download is checked against the release's SHA256SUMS before anything is installed.
# Environment overrides: SHIMMY_REPO, SHIMMY_INSTALL_BASE_URL, SHIMMY_INSTALL_DIR,
# SHIMMY_VERSION, SHIMMY_FLAVOUR, SHIMMY_NO_MODIFY_PATH=1 (leave the user PATH alone).
param(
  [string]$Flavour = $(if ($env:SHIMMY_FLAVOUR) { $env:SHIMMY_FLAVOUR } else { "auto" }),
  [string]$Version = $(if ($env:SHIMMY_VERSION) { $env:SHIMMY_VERSION } else { "latest" }),
  [string]$Dir = $env:SHIMMY_INSTALL_DIR
)
$ErrorActionPreference = "Stop"
$ProgressPreference = "SilentlyContinue"

# throw, not exit: under `irm | iex`, exit would close the user's terminal.
function Fail([string]$Message) { throw "install.ps1: $Message" }
function Say([string]$Message) { [Console]::Error.WriteLine("install.ps1: $Message") }

$Repo = if ($env:SHIMMY_REPO) { $env:SHIMMY_REPO } else { "__SHIMMY_REPO__" }
$BaseUrl = if ($env:SHIMMY_INSTALL_BASE_URL) { $env:SHIMMY_INSTALL_BASE_URL } else { "https://github.com/$Repo/releases" }
# Spelled in two halves, so that publishing (which fills in the placeholder) leaves this check.
if ($BaseUrl -like ("*__SHIMMY_" + "REPO__*")) { Fail "set SHIMMY_REPO=owner/name (the GitHub repository)" }
if (-not $Dir) {
  $local = if ($env:LOCALAPPDATA) { $env:LOCALAPPDATA } else { Join-Path $HOME ".local" }
  $Dir = Join-Path (Join-Path $local "Programs") "shimmy"
}
if ($Flavour -notin @("auto", "cpu", "cuda", "vulkan")) {
  Fail "-Flavour must be auto, cpu, cuda or vulkan, not $Flavour"
}

function Test-Nvidia {
  if (-not (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) { return $false }
  try { return [bool]((& nvidia-smi -L 2>$null) -match "^GPU") } catch { return $false }
}
function Test-Vulkan {
  if (-not (Get-Command vulkaninfo -ErrorAction SilentlyContinue)) { return $false }
  try {
    $summary = & vulkaninfo --summary 2>$null
    return [bool]($summary -match "deviceType\s*=\s*PHYSICAL_DEVICE_TYPE_(DISCRETE|INTEGRATED)_GPU")
  } catch { return $false }
}

if ($Flavour -eq "auto") {
  $Flavour = if (Test-Nvidia) { "cuda" } elseif (Test-Vulkan) { "vulkan" } else { "cpu" }
  Say "detected windows-x64, flavour $Flavour"
}
# Windows on ARM runs the x64 build under emulation.
$Asset = if ($Flavour -eq "cpu") { "shimmy-windows-x64" } else { "shimmy-windows-x64-$Flavour" }
$Archive = "$Asset.zip"
$Url = if ($Version -eq "latest") { "$BaseUrl/latest/download" } else { "$BaseUrl/download/$Version" }

$Tmp = Join-Path ([IO.Path]::GetTempPath()) ("shimmy-install-" + [Guid]::NewGuid())
New-Item -ItemType Directory -Path $Tmp | Out-Null
try {
  Say "downloading $Url/$Archive"
  try {
    Invoke-WebRequest -UseBasicParsing -Uri "$Url/$Archive" -OutFile (Join-Path $Tmp $Archive)
    Invoke-WebRequest -UseBasicParsing -Uri "$Url/SHA256SUMS" -OutFile (Join-Path $Tmp "SHA256SUMS")
  } catch {
    Fail "cannot download from ${Url}: $($_.Exception.Message)"
  }
  $Expected = $null
  foreach ($line in Get-Content (Join-Path $Tmp "SHA256SUMS")) {
    $parts = $line -split "\s+\*?", 2
    if ($parts.Count -eq 2 -and $parts[1] -eq $Archive) { $Expected = $parts[0].ToLower() }
  }
  if (-not $Expected) { Fail "SHA256SUMS has no line for $Archive" }
  $Actual = (Get-FileHash -Algorithm SHA256 -Path (Join-Path $Tmp $Archive)).Hash.ToLower()
  if ($Actual -ne $Expected) {
    Fail "checksum mismatch for $Archive (expected $Expected, got $Actual); nothing was installed"
  }
  Say "checksum OK ($Actual)"

  Expand-Archive -Path (Join-Path $Tmp $Archive) -DestinationPath (Join-Path $Tmp "x") -Force
  $Exe = Join-Path (Join-Path $Tmp "x") "shimmy.exe"
  if (-not (Test-Path $Exe)) { Fail "$Archive holds no shimmy.exe" }
  New-Item -ItemType Directory -Force -Path $Dir | Out-Null
  $Target = Join-Path $Dir "shimmy.exe"
  # A running shimmy.exe cannot be overwritten, but it can be renamed out of the way.
  if (Test-Path $Target) { Move-Item -Force $Target "$Target.old" -ErrorAction SilentlyContinue }
  Copy-Item $Exe $Target
  Remove-Item -Force "$Target.old" -ErrorAction SilentlyContinue
  Say "installed $Target ($Asset, $Version)"

  $onWindows = ($PSVersionTable.PSEdition -eq "Desktop") -or $IsWindows
  if ($onWindows -and $env:SHIMMY_NO_MODIFY_PATH -ne "1") {
    $userPath = [Environment]::GetEnvironmentVariable("Path", "User")
    if (-not (($userPath -split ";") -contains $Dir)) {
      [Environment]::SetEnvironmentVariable("Path", "$Dir;$userPath", "User")
      Say "added $Dir to your user PATH; open a new terminal, then run: shimmy serve --model C:\path\to\model.gguf"
    }
  }
} finally {
  Remove-Item -Recurse -Force $Tmp -ErrorAction SilentlyContinue
}
