//! [`TranscodeLayer`]: the configuration, applied to a service.

use std::sync::Arc;

use tower::Layer;

use super::service::Transcode;
use super::transcoder::Transcoder;

/// Puts a [`Transcoder`] in front of a tonic router.
#[derive(Debug, Clone)]
pub struct TranscodeLayer {
    transcoder: Arc<Transcoder>,
}

impl TranscodeLayer {
    /// The layer.
    pub fn new(transcoder: Transcoder) -> Self {
        Self {
            transcoder: Arc::new(transcoder),
        }
    }
}

impl<S> Layer<S> for TranscodeLayer {
    type Service = Transcode<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transcode::new(inner, self.transcoder.clone())
    }
}
