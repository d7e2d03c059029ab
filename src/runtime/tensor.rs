//! The project's own tensor: a shape and a flat row-major buffer. Owned
//! (`Tensor`) for outputs, borrowed (`TensorView`) for inputs so callers keep
//! their buffers (KV cache, hidden states) without handing them over.

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: TensorData::F32(data),
        }
    }
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: TensorData::I64(data),
        }
    }
    /// The f32 data, or `None` for another element type.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn into_f32(self) -> Option<Vec<f32>> {
        match self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: self.shape.clone(),
            data: match &self.data {
                TensorData::F32(v) => ViewData::F32(v),
                TensorData::I64(v) => ViewData::I64(v),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum ViewData<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    pub shape: Vec<usize>,
    pub data: ViewData<'a>,
}

impl<'a> TensorView<'a> {
    pub fn f32(shape: Vec<usize>, data: &'a [f32]) -> TensorView<'a> {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        TensorView {
            shape,
            data: ViewData::F32(data),
        }
    }
    pub fn i64(shape: Vec<usize>, data: &'a [i64]) -> TensorView<'a> {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        TensorView {
            shape,
            data: ViewData::I64(data),
        }
    }
}
