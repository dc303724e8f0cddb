//! AAC (from RTMP) to Opus (for WebRTC): decoded with Symphonia, resampled to 48 kHz, encoded
//! with libopus in 20 ms frames, mono or stereo as the source is.

use std::panic::{AssertUnwindSafe, catch_unwind};

use symphonia_core::audio::SampleBuffer;
use symphonia_core::codecs::{CODEC_TYPE_AAC, CodecParameters, Decoder, DecoderOptions};
use symphonia_core::formats::Packet;

/// Opus's sample rate.
pub const OPUS_RATE: u32 = 48_000;
/// Samples per channel of one 20 ms Opus frame.
pub const FRAME: usize = 960;
/// Largest Opus packet written.
const MAX_PACKET: usize = 4000;

/// Why audio cannot be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The AudioSpecificConfig is not AAC-LC mono or stereo.
    #[error("unsupported AAC: {0}")]
    Unsupported(String),
    /// The decoder refused a frame.
    #[error("AAC decoding: {0}")]
    Decode(String),
    /// libopus failed.
    #[error("Opus encoding: {0}")]
    Encode(String),
}

/// What an AudioSpecificConfig says (ISO 14496-3 1.6.2.1), for the cases decoded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u8,
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parses an AudioSpecificConfig; only AAC-LC (object type 2) with 1 or 2 channels is accepted.
pub fn parse_asc(asc: &[u8]) -> Result<AacConfig, AudioError> {
    let (&a, &b) = match asc {
        [a, b, ..] => (a, b),
        _ => {
            return Err(AudioError::Unsupported(
                "AudioSpecificConfig shorter than 2 bytes".into(),
            ));
        }
    };
    let object = a >> 3;
    let index = usize::from(((a & 7) << 1) | (b >> 7));
    if object != 2 {
        return Err(AudioError::Unsupported(format!(
            "object type {object} (only AAC-LC, 2)"
        )));
    }
    let sample_rate = *RATES
        .get(index)
        .ok_or_else(|| AudioError::Unsupported(format!("sampling frequency index {index}")))?;
    let channels = (b >> 3) & 0x0f;
    if !(1..=2).contains(&channels) {
        return Err(AudioError::Unsupported(format!(
            "channel configuration {channels} (only mono or stereo)"
        )));
    }
    Ok(AacConfig {
        sample_rate,
        channels,
    })
}

/// Linear-interpolation resampler of interleaved samples.
struct Resampler {
    step: f64,
    pos: f64,
    last: Vec<f32>,
}

impl Resampler {
    fn new(from: u32, channels: usize) -> Self {
        Resampler {
            step: f64::from(from) / f64::from(OPUS_RATE),
            pos: 0.0,
            last: vec![0.0; channels],
        }
    }

    fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.last.len();
        let frames = input.len() / ch;
        if frames == 0 {
            return;
        }
        // Frame 0 is the last frame of the previous call; frames 1..=n are the input's.
        let at = |i: usize, c: usize| {
            if i == 0 {
                self.last[c]
            } else {
                input[(i - 1) * ch + c]
            }
        };
        while self.pos < frames as f64 {
            let i = self.pos as usize;
            let frac = (self.pos - i as f64) as f32;
            for c in 0..ch {
                out.push(at(i, c) * (1.0 - frac) + at(i + 1, c) * frac);
            }
            self.pos += self.step;
        }
        self.pos -= frames as f64;
        self.last
            .copy_from_slice(&input[(frames - 1) * ch..frames * ch]);
    }
}

/// Turns AAC frames into 20 ms Opus packets.
pub struct Transcoder {
    config: AacConfig,
    decoder: symphonia_codec_aac::AacDecoder,
    resampler: Option<Resampler>,
    encoder: opus::Encoder,
    pcm: Vec<f32>,
    resampled: Vec<f32>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("config", &self.config)
            .finish()
    }
}

impl Transcoder {
    /// A transcoder for the stream an AudioSpecificConfig describes.
    pub fn new(asc: &[u8]) -> Result<Self, AudioError> {
        let config = parse_asc(asc)?;
        let mut params = CodecParameters::new();
        params
            .for_codec(CODEC_TYPE_AAC)
            .with_extra_data(asc.to_vec().into_boxed_slice());
        let decoder = symphonia_codec_aac::AacDecoder::try_new(&params, &DecoderOptions::default())
            .map_err(|e| AudioError::Unsupported(e.to_string()))?;
        let channels = if config.channels == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let encoder = opus::Encoder::new(OPUS_RATE, channels, opus::Application::Audio)
            .map_err(|e| AudioError::Encode(e.to_string()))?;
        let resampler = (config.sample_rate != OPUS_RATE)
            .then(|| Resampler::new(config.sample_rate, usize::from(config.channels)));
        Ok(Transcoder {
            config,
            decoder,
            resampler,
            encoder,
            pcm: Vec::new(),
            resampled: Vec::new(),
        })
    }

    /// The source's parameters.
    pub fn config(&self) -> AacConfig {
        self.config
    }

    /// Opus channels (as the source).
    pub fn channels(&self) -> u8 {
        self.config.channels
    }

    /// Decodes one raw AAC frame and appends the Opus packets now complete (20 ms each).
    pub fn push(&mut self, aac: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), AudioError> {
        let packet = Packet::new_from_slice(0, 0, 1024, aac);
        let decoder = &mut self.decoder;
        let pcm = &mut self.pcm;
        // The decoder is not expected to panic; if it does on hostile input, the stream's audio
        // fails instead of the connection.
        let decoded = catch_unwind(AssertUnwindSafe(|| -> Result<(), AudioError> {
            let buf = decoder
                .decode(&packet)
                .map_err(|e| AudioError::Decode(e.to_string()))?;
            let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, *buf.spec());
            sb.copy_interleaved_ref(buf);
            pcm.clear();
            pcm.extend_from_slice(sb.samples());
            Ok(())
        }))
        .map_err(|_| AudioError::Decode("decoder panicked".into()))?;
        decoded?;
        match &mut self.resampler {
            Some(r) => r.process(&self.pcm, &mut self.resampled),
            None => self.resampled.extend_from_slice(&self.pcm),
        }
        let n = FRAME * usize::from(self.config.channels);
        let mut done = 0;
        while self.resampled.len() - done >= n {
            let mut pkt = vec![0u8; MAX_PACKET];
            let len = self
                .encoder
                .encode_float(&self.resampled[done..done + n], &mut pkt)
                .map_err(|e| AudioError::Encode(e.to_string()))?;
            pkt.truncate(len);
            out.push(pkt);
            done += n;
        }
        self.resampled.drain(..done);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_specific_config() {
        // AAC-LC, 48 kHz (index 3), stereo: 0x11 0x90. 44.1 kHz mono: 0x12 0x08.
        assert_eq!(
            parse_asc(&[0x11, 0x90]).unwrap(),
            AacConfig {
                sample_rate: 48000,
                channels: 2
            }
        );
        assert_eq!(
            parse_asc(&[0x12, 0x08]).unwrap(),
            AacConfig {
                sample_rate: 44100,
                channels: 1
            }
        );
        assert!(parse_asc(&[0x12]).is_err());
        // HE-AAC (5), channel configuration 0 (a PCE), index 15.
        assert!(parse_asc(&[0x29, 0x90]).is_err());
        assert!(parse_asc(&[0x11, 0x80]).is_err());
        assert!(parse_asc(&[0x17, 0x90]).is_err());
    }

    #[test]
    fn resampler_keeps_the_rate_and_the_tone() {
        // 1 s of a 1 kHz sine at 44.1 kHz in 1024-sample pieces becomes about 48000 samples.
        let mut r = Resampler::new(44100, 1);
        let src: Vec<f32> = (0..44100)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 44100.0).sin())
            .collect();
        let mut out = Vec::new();
        for piece in src.chunks(1024) {
            r.process(piece, &mut out);
        }
        assert!((out.len() as i64 - 48000).abs() <= 2, "{}", out.len());
        // Zero crossings: 2 per period, 1000 periods.
        let crossings = out
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((1990..=2010).contains(&crossings), "{crossings}");
    }

    #[test]
    fn garbage_aac_is_an_error_not_a_panic() {
        let mut t = Transcoder::new(&[0x11, 0x90]).unwrap();
        let mut out = Vec::new();
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = t.push(&junk, &mut out);
        }
        assert!(out.len() < 64);
    }
}
