//! The ONNX Runtime backend (cargo feature `ort`, `load-dynamic`): Jetson
//! boards run the bundle's dense graphs through it with the TensorRT and CUDA
//! execution providers; any machine can run it on the CPU provider.
//!
//! Owns: finding and loading `libonnxruntime.so` (board option, else
//! `ORT_DYLIB_PATH`, else the loader's search path) into the one ONNX Runtime
//! environment a process may have; registering the board's providers in
//! order (TensorRT: device, fp16, engine and timing caches, shape profiles for
//! the symbolic dims T and P; CUDA: device, memory limit; CPU), failing when
//! one does not register unless the board allows a logged CPU fallback;
//! converting our tensors to ort values (borrowed, no copy) and back.
//! Not: which graphs exist or what they compute (`bundle`, `engine`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::{ExecutionProvider, CPU, CUDA};
use ort::logging::LogLevel;
use ort::memory::MemoryInfo;
use ort::session::builder::SessionBuilder;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, TensorRefMut, ValueType};

use super::{
    Backend, BackendOptions, Graph, OrtOptions, OutInto, RuntimeError, Tensor, TensorView, ViewData,
};

const BACKEND: &str = "ort";

/// Said when no ONNX Runtime library can be loaded.
const WHERE_TO_GET_IT: &str = "set ORT_DYLIB_PATH to libonnxruntime.so (>= 1.18); on a Jetson it ships with \
JetPack's onnxruntime-gpu wheel (Jetson Zoo: .../site-packages/onnxruntime/capi/libonnxruntime.so.1.*), \
on a development machine `scripts/fetch-onnxruntime.sh` prints the path of the PyPI wheel's CPU build";

/// A process holds one ONNX Runtime library and one environment (ort refuses a
/// second); backends share it. Kept for the life of the process: ort
/// remembers that an environment was built even after it is dropped.
static ENV: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);
/// Intra-op threads of the shared pool made with the environment.
static POOL_THREADS: Mutex<usize> = Mutex::new(0);

/// An execution provider of a board, in ONNX Runtime's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    TensorRt,
    Cuda,
    Cpu,
}

impl Provider {
    pub fn parse(name: &str) -> Result<Provider, RuntimeError> {
        match name {
            "tensorrt" => Ok(Provider::TensorRt),
            "cuda" => Ok(Provider::Cuda),
            "cpu" => Ok(Provider::Cpu),
            other => Err(RuntimeError::Setup {
                backend: BACKEND,
                msg: format!("unknown execution provider `{other}` (tensorrt, cuda, cpu)"),
            }),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Provider::TensorRt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
    fn ort_name(self) -> &'static str {
        match self {
            Provider::TensorRt => "TensorrtExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::Cpu => "CPUExecutionProvider",
        }
    }
}

pub struct OrtBackend {
    env: Environment,
    /// The library this process loaded.
    dylib: PathBuf,
    threads: usize,
    opts: OrtOptions,
    /// The providers that registered, in order (the CPU provider is always
    /// there as ONNX Runtime's last resort, listed or not).
    providers: Vec<Provider>,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("dylib", &self.dylib)
            .field("threads", &self.threads)
            .field("providers", &self.providers)
            .finish()
    }
}

fn setup(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Setup {
        backend: BACKEND,
        msg: msg.into(),
    }
}

/// The library to load: the board's, else `ORT_DYLIB_PATH`, else the bare
/// name for the dynamic loader's search (`LD_LIBRARY_PATH`, ldconfig).
pub fn resolve_dylib(opts: &OrtOptions) -> (PathBuf, &'static str) {
    if let Some(p) = &opts.dylib {
        return (p.clone(), "board");
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "ORT_DYLIB_PATH"),
        _ => (PathBuf::from("libonnxruntime.so"), "loader search path"),
    }
}

fn ort_logger() -> ort::logging::LoggerFunction {
    Arc::new(
        |level: LogLevel, category: &str, _id: &str, at: &str, msg: &str| match level {
            LogLevel::Fatal | LogLevel::Error => {
                log::error!("onnxruntime category={category} at={at} msg={msg}")
            }
            LogLevel::Warning => log::warn!("onnxruntime category={category} at={at} msg={msg}"),
            LogLevel::Info => log::debug!("onnxruntime category={category} at={at} msg={msg}"),
            LogLevel::Verbose => log::trace!("onnxruntime category={category} at={at} msg={msg}"),
        },
    )
}

/// The process's environment, loading the library on first use.
///
/// The environment owns the one intra-op thread pool every session shares
/// (`threads` of the first board in the process), with spinning off: idle
/// ONNX Runtime threads sleep instead of spinning against the engine's own
/// compute pool, which runs the experts between the graphs.
fn environment(opts: &OrtOptions, threads: usize) -> Result<(PathBuf, Environment), RuntimeError> {
    let (want, source) = resolve_dylib(opts);
    let mut env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((loaded, e)) = env.as_ref() {
        let same = |a: &Path, b: &Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if source != "loader search path" && !same(loaded, &want) {
            return Err(setup(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {} (from {source})",
                loaded.display(),
                want.display()
            )));
        }
        if *POOL_THREADS.lock().unwrap_or_else(|p| p.into_inner()) != threads {
            log::debug!("ort thread pool already made; keeping its size requested={threads}");
        }
        return Ok((loaded.clone(), e.clone()));
    }
    if source != "loader search path" && !want.exists() {
        return Err(setup(format!(
            "no ONNX Runtime library at {} (from {source}): {WHERE_TO_GET_IT}",
            want.display()
        )));
    }
    let builder = ort::init_from(&want).map_err(|e| {
        setup(format!(
            "cannot load ONNX Runtime from {} (from {source}): {e}; {WHERE_TO_GET_IT}",
            want.display()
        ))
    })?;
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(threads)
        .and_then(|p| p.with_inter_threads(1))
        .and_then(|p| p.with_spin_control(false))
        .map_err(|e| setup(format!("ONNX Runtime thread pool of {threads}: {e}")))?;
    *POOL_THREADS.lock().unwrap_or_else(|p| p.into_inner()) = threads;
    let e = builder
        .with_global_thread_pool(pool)
        .with_name("moe-edge")
        .with_telemetry(false)
        .with_logger(ort_logger())
        .build()
        .map_err(|e| setup(format!("cannot create the ONNX Runtime environment: {e}")))?;
    e.set_log_level(LogLevel::Warning);
    log::info!(
        "onnxruntime loaded dylib={} source={source} api=1.{}",
        want.display(),
        ort::MINOR_VERSION
    );
    *env = Some((want.clone(), e.clone()));
    Ok((want, e))
}

fn available(p: Provider) -> Option<bool> {
    match p {
        Provider::TensorRt => ort::ep::TensorRT::is_available().ok(),
        Provider::Cuda => CUDA::is_available().ok(),
        Provider::Cpu => Some(true),
    }
}

impl OrtBackend {
    /// Loads the library (once per process) and checks that every provider
    /// of the board registers, so a board that cannot run as configured fails
    /// here, before any graph is loaded.
    pub fn new(opts: &BackendOptions) -> Result<OrtBackend, RuntimeError> {
        let (dylib, env) = environment(&opts.ort, opts.threads.max(1))?;
        let mut wanted = Vec::new();
        for p in &opts.ort.providers {
            let p = Provider::parse(p)?;
            if !wanted.contains(&p) {
                wanted.push(p);
            }
        }
        if wanted.is_empty() {
            wanted.push(Provider::Cpu);
        }
        let mut backend = OrtBackend {
            env,
            dylib,
            threads: opts.threads.max(1),
            opts: opts.ort.clone(),
            providers: Vec::new(),
        };
        let mut failed = Vec::new();
        for &p in &wanted {
            let mut b = Session::builder(&backend.env)
                .map_err(|e| setup(format!("session options: {e}")))?;
            match backend.register(&mut b, p, &[]) {
                Ok(()) => backend.providers.push(p),
                Err(msg) => {
                    if !backend.opts.allow_cpu_fallback {
                        return Err(setup(format!(
                            "execution provider `{}` failed to register: {msg}; the board lists providers [{}] and does \
                             not allow a CPU fallback (set `allow_cpu_fallback = true` under [ort] to run on the CPU \
                             with a warning instead)",
                            p.name(),
                            opts.ort.providers.join(", ")
                        )));
                    }
                    log::warn!(
                        "ort provider unavailable, falling back to cpu provider={} err={msg}",
                        p.name()
                    );
                    failed.push(p);
                }
            }
        }
        if !backend.providers.contains(&Provider::Cpu)
            && !failed.is_empty()
            && backend.providers.is_empty()
        {
            backend.providers.push(Provider::Cpu);
        }
        log::info!(
            "ort backend ready dylib={} threads={} providers={}",
            backend.dylib.display(),
            backend.threads,
            backend
                .providers
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(backend)
    }

    /// The providers that registered, in order of preference.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn dylib(&self) -> &Path {
        &self.dylib
    }

    /// Register `p` on `b`; `inputs` are the graph's inputs (for TensorRT's
    /// shape profiles; empty when only probing).
    fn register(
        &self,
        b: &mut SessionBuilder,
        p: Provider,
        inputs: &[onnx_inputs::Input],
    ) -> Result<(), String> {
        let o = &self.opts;
        if available(p) == Some(false) {
            return Err(format!(
                "this ONNX Runtime library ({}) was built without {}",
                self.dylib.display(),
                p.ort_name()
            ));
        }
        let res = match p {
            Provider::Cpu => CPU::default().register(b),
            Provider::Cuda => {
                let mut ep = CUDA::default().with_device_id(o.device_id);
                if let Some(limit) = o.gpu_mem_limit {
                    // Grow by what is asked, not to the next power of two:
                    // the arena shares the board's memory with the experts.
                    ep = ep
                        .with_memory_limit(limit)
                        .with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested);
                }
                ep.register(b)
            }
            Provider::TensorRt => {
                let mut ep = ort::ep::TensorRT::default()
                    .with_device_id(o.device_id)
                    .with_fp16(o.fp16);
                if let Some(limit) = o.gpu_mem_limit {
                    ep = ep.with_max_workspace_size(limit.min(1 << 30));
                }
                if let Some(dir) = &o.trt_cache_dir {
                    let engines = dir.join("engines");
                    let timing = dir.join("timing");
                    for d in [&engines, &timing] {
                        std::fs::create_dir_all(d).map_err(|e| {
                            format!(
                                "cannot create the TensorRT cache directory {}: {e}",
                                d.display()
                            )
                        })?;
                    }
                    ep = ep
                        .with_engine_cache(true)
                        .with_engine_cache_path(engines.display())
                        .with_timing_cache(true)
                        .with_timing_cache_path(timing.display());
                }
                if let Some(pr) = trt_profiles(inputs, o.max_context) {
                    ep = ep
                        .with_profile_min_shapes(pr.min)
                        .with_profile_opt_shapes(pr.opt)
                        .with_profile_max_shapes(pr.max);
                }
                ep.register(b)
            }
        };
        res.map_err(|e| e.to_string())
    }

    fn session(&self, path: &Path, providers: &[Provider]) -> Result<Session, RuntimeError> {
        let load = |msg: String| RuntimeError::Load {
            path: path.display().to_string(),
            msg,
        };
        // Threads come from the environment's shared pool (see `environment`).
        let mut b =
            Session::builder(&self.env).map_err(|e| load(format!("session options: {e}")))?;
        let inputs = if providers.contains(&Provider::TensorRt) {
            onnx_inputs::read(path).map_err(load)?
        } else {
            Vec::new()
        };
        for &p in providers {
            self.register(&mut b, p, &inputs)
                .map_err(|msg| load(format!("execution provider `{}`: {msg}", p.name())))?;
        }
        b.commit_from_file(path).map_err(|e| load(e.to_string()))
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Graph>, RuntimeError> {
        if !path.is_file() {
            return Err(RuntimeError::Load {
                path: path.display().to_string(),
                msg: "no such file".into(),
            });
        }
        let gpu = self.providers.iter().any(|p| *p != Provider::Cpu);
        let session = match self.session(path, &self.providers) {
            Ok(s) => s,
            Err(e) if gpu && self.opts.allow_cpu_fallback => {
                log::warn!(
                    "ort graph cannot run on the GPU providers, falling back to cpu graph={} err={e}",
                    path.display()
                );
                self.session(path, &[Provider::Cpu])?
            }
            Err(e) => return Err(e),
        };
        let inputs = session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        log::debug!(
            "ort graph loaded graph={name} providers={}",
            self.providers
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(Box::new(OrtGraph {
            name,
            inputs,
            outputs,
            session: Mutex::new(session),
        }))
    }
}

struct OrtGraph {
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    session: Mutex<Session>,
}

impl OrtGraph {
    fn error(&self, msg: String) -> RuntimeError {
        RuntimeError::Run {
            graph: self.name.clone(),
            msg,
        }
    }

    /// The inputs as ONNX Runtime values borrowing the caller's buffers
    /// (no copy), after checking there is one per graph input.
    fn views<'v>(
        &self,
        inputs: &[TensorView<'v>],
    ) -> Result<Vec<SessionInputValue<'v>>, RuntimeError> {
        if inputs.len() != self.inputs.len() {
            return Err(self.error(format!(
                "{} inputs given, the graph takes {} ({})",
                inputs.len(),
                self.inputs.len(),
                self.inputs.join(", ")
            )));
        }
        inputs
            .iter()
            .zip(&self.inputs)
            .map(|(v, name)| {
                let shape: Vec<i64> = v.shape.iter().map(|&d| d as i64).collect();
                match v.data {
                    ViewData::F32(d) => TensorRef::from_array_view((shape, d)).map(Into::into),
                    ViewData::I64(d) => TensorRef::from_array_view((shape, d)).map(Into::into),
                }
                .map_err(|e| self.error(format!("input {name}: {e}")))
            })
            .collect()
    }
}

impl Graph for OrtGraph {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }
    fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Through an I/O binding: inputs are bound as views of the caller's
    /// buffers (the KV cache's past, read in place) and the outputs of
    /// `into` as views of the caller's room for them (the KV cache's rows
    /// of this step, written in place); the rest come back from ONNX
    /// Runtime's CPU allocator.
    fn run_into(
        &self,
        inputs: &[TensorView<'_>],
        into: &mut [OutInto<'_>],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let err = |msg: String| self.error(msg);
        // Views of the caller's buffers, alive until the run is over.
        let views = self.views(inputs)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let mut binding = session
            .create_binding()
            .map_err(|e| err(format!("I/O binding: {e}")))?;
        for (value, name) in views.iter().zip(&self.inputs) {
            bind_input_in_place(&mut binding, name, value)
                .map_err(|e| err(format!("input {name}: {e}")))?;
        }
        let cpu = MemoryInfo::default();
        for (i, name) in self.outputs.iter().enumerate() {
            let bound = match into.iter_mut().find(|o| o.index == i) {
                Some(o) => {
                    let shape: Vec<i64> = o.shape.iter().map(|&d| d as i64).collect();
                    TensorRefMut::from_array_view_mut((shape, &mut *o.buf))
                        .and_then(|t| binding.bind_output(name.as_str(), t))
                }
                None => binding.bind_output_to_device(name.as_str(), &cpu),
            };
            bound.map_err(|e| err(format!("output {name}: {e}")))?;
        }
        let outs = session
            .run_binding(&binding)
            .map_err(|e| err(e.to_string()))?;
        drop(views);
        let mut result = Vec::with_capacity(self.outputs.len());
        for (i, name) in self.outputs.iter().enumerate() {
            if into.iter().any(|o| o.index == i) {
                result.push(Tensor::f32(vec![0], vec![]));
                continue;
            }
            let value = outs
                .get(name.as_str())
                .ok_or_else(|| err(format!("output {name} missing")))?;
            result.push(tensor_of(value, name).map_err(err)?);
        }
        Ok(result)
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError> {
        let err = |msg: String| self.error(msg);
        // Borrowed views: ONNX Runtime reads our buffers in place.
        let values = self.views(inputs)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outs = session
            .run(values.as_slice())
            .map_err(|e| err(e.to_string()))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for (name, value) in &outs {
            result.push(tensor_of(&value, name).map_err(err)?);
        }
        Ok(result)
    }
}

/// Binds `value` (a view of the caller's buffer) as an input without a copy.
/// `IoBinding::bind_input` copies a borrowed tensor so that the binding may
/// outlive it; here the binding is dropped before the view (`run_into`), so
/// ONNX Runtime's own `BindInput` reads the caller's buffer in place.
fn bind_input_in_place(
    binding: &mut ort::session::IoBinding,
    name: &str,
    value: &SessionInputValue<'_>,
) -> Result<(), String> {
    use ort::AsPointer;
    let cname = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    let api = ort::api();
    // SAFETY: both pointers come from live ort objects; the value's buffer
    // outlives every use of the binding (see `run_into`).
    unsafe {
        let status = (api.BindInput)(binding.ptr_mut(), cname.as_ptr(), value.ptr());
        if status.0.is_null() {
            return Ok(());
        }
        let msg = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        Err(msg)
    }
}

/// An output of ONNX Runtime as our tensor (f32 or i64).
fn tensor_of(value: &ort::value::DynValue, name: &str) -> Result<Tensor, String> {
    let dims = |shape: &ort::value::Shape| shape.iter().map(|&d| d as usize).collect();
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("output {name}: {e}"))?;
            Ok(Tensor::f32(dims(shape), data.to_vec()))
        }
        ValueType::Tensor {
            ty: TensorElementType::Int64,
            ..
        } => {
            let (shape, data) = value
                .try_extract_tensor::<i64>()
                .map_err(|e| format!("output {name}: {e}"))?;
            Ok(Tensor::i64(dims(shape), data.to_vec()))
        }
        other => Err(format!("output {name}: unsupported type {other:?}")),
    }
}

/// TensorRT optimisation profiles, one `name:d0xd1x..` entry per input with
/// a symbolic dim, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrtProfiles {
    pub min: String,
    pub opt: String,
    pub max: String,
}

/// (min, opt, max) of a symbolic dim of the graph contract: T new tokens
/// (decode, T = 1, is the hot path), P past positions (0 on a prefill), P+T.
fn dim_range(sym: &str, max_context: usize) -> (usize, usize, usize) {
    let m = max_context.max(2);
    match sym {
        "P" => (0, m / 2, m),
        "P+T" => (1, m / 2 + 1, m),
        // "T" and any symbol the contract does not name.
        _ => (1, 1, m),
    }
}

fn trt_profiles(inputs: &[onnx_inputs::Input], max_context: usize) -> Option<TrtProfiles> {
    let (mut min, mut opt, mut max) = (Vec::new(), Vec::new(), Vec::new());
    for input in inputs {
        if !input
            .dims
            .iter()
            .any(|d| matches!(d, onnx_inputs::Dim::Sym(_)))
        {
            continue;
        }
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for d in &input.dims {
            let (lo, mid, hi) = match d {
                onnx_inputs::Dim::Fixed(n) => (*n, *n, *n),
                onnx_inputs::Dim::Sym(s) => dim_range(s, max_context),
            };
            parts[0].push(lo.to_string());
            parts[1].push(mid.to_string());
            parts[2].push(hi.to_string());
        }
        min.push(format!("{}:{}", input.name, parts[0].join("x")));
        opt.push(format!("{}:{}", input.name, parts[1].join("x")));
        max.push(format!("{}:{}", input.name, parts[2].join("x")));
    }
    if min.is_empty() {
        return None;
    }
    Some(TrtProfiles {
        min: min.join(","),
        opt: opt.join(","),
        max: max.join(","),
    })
}

/// The graph inputs of an ONNX file (names and dims), read before a session
/// exists because TensorRT wants its shape profiles at registration. Decodes
/// only `ModelProto.graph.input` from a memory map: initializers are skipped
/// without being read.
mod onnx_inputs {
    use std::path::Path;

    use prost::Message;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Dim {
        Fixed(usize),
        Sym(String),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Input {
        pub name: String,
        pub dims: Vec<Dim>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ModelProto {
        #[prost(message, optional, tag = "7")]
        graph: Option<GraphProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct GraphProto {
        #[prost(message, repeated, tag = "11")]
        input: Vec<ValueInfoProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct ValueInfoProto {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        r#type: Option<TypeProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct TypeProto {
        #[prost(message, optional, tag = "1")]
        tensor_type: Option<TensorTypeProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        elem_type: i32,
        #[prost(message, optional, tag = "2")]
        shape: Option<TensorShapeProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        dim: Vec<DimProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct DimProto {
        #[prost(int64, optional, tag = "1")]
        dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        dim_param: Option<String>,
    }

    pub fn read(path: &Path) -> Result<Vec<Input>, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: read-only map of a bundle file nobody writes while it is loaded.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
        decode(&map)
    }

    pub fn decode(bytes: &[u8]) -> Result<Vec<Input>, String> {
        let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
        let graph = model.graph.ok_or("not an ONNX model: no graph")?;
        Ok(graph
            .input
            .into_iter()
            .map(|vi| Input {
                name: vi.name,
                dims: vi
                    .r#type
                    .and_then(|t| t.tensor_type)
                    .and_then(|t| t.shape)
                    .map(|s| {
                        s.dim
                            .into_iter()
                            .map(|d| match (d.dim_value, d.dim_param) {
                                (Some(v), _) if v >= 0 => Dim::Fixed(v as usize),
                                (_, Some(p)) if !p.is_empty() => Dim::Sym(p),
                                _ => Dim::Sym("?".into()),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::onnx_inputs::{Dim, Input};
    use super::*;

    #[test]
    fn profiles_cover_symbolic_inputs_only() {
        let inputs = vec![
            Input {
                name: "hidden".into(),
                dims: vec![Dim::Sym("T".into()), Dim::Fixed(64)],
            },
            Input {
                name: "mask".into(),
                dims: vec![Dim::Sym("T".into()), Dim::Sym("P+T".into())],
            },
            Input {
                name: "past_k".into(),
                dims: vec![Dim::Sym("P".into()), Dim::Fixed(2), Dim::Fixed(16)],
            },
            Input {
                name: "fixed".into(),
                dims: vec![Dim::Fixed(3)],
            },
        ];
        let p = trt_profiles(&inputs, 1024).unwrap();
        assert_eq!(p.min, "hidden:1x64,mask:1x1,past_k:0x2x16");
        assert_eq!(p.opt, "hidden:1x64,mask:1x513,past_k:512x2x16");
        assert_eq!(p.max, "hidden:1024x64,mask:1024x1024,past_k:1024x2x16");
        assert_eq!(trt_profiles(&inputs[3..], 1024), None);
    }

    #[test]
    fn unknown_provider_named() {
        let e = Provider::parse("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("tensorrt"), "{e}");
    }

    #[test]
    fn missing_library_says_where_to_get_it() {
        let opts = OrtOptions {
            dylib: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
            ..OrtOptions::default()
        };
        // Only meaningful while no library is loaded in this test process.
        if ENV.lock().unwrap().is_some() {
            return;
        }
        let e = environment(&opts, 1).unwrap_err().to_string();
        assert!(
            e.contains("ORT_DYLIB_PATH") && e.contains("/nonexistent"),
            "{e}"
        );
    }
}
