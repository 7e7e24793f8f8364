//! Object formats and compression: how records become the bytes of an object.

use flate2::write::GzEncoder;
use std::io::Write;

/// How records are laid out inside an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// One JSON document per line (what Firehose delivers for JSON input).
    #[default]
    JsonLines,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
        }
    }
}

/// Compression applied to the whole object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// GZIP (level 6), as Firehose's `GZIP`; the object ends in `.gz`.
    Gzip,
    /// Zstandard (level 3); the object ends in `.zst`.
    Zstd,
}

impl Compression {
    fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// The file extension (with the leading dot) of objects in `format` compressed with `compression`.
pub(crate) fn extension(format: Format, compression: Compression) -> String {
    format!(".{}{}", format.extension(), compression.extension())
}

/// A streaming compressor whose output accumulates in a `Vec` that the sink drains into
/// multipart parts as it grows, so memory per open object stays around one part.
pub(crate) enum Encoder {
    Plain(Vec<u8>),
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub(crate) fn new(compression: Compression) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(Vec::new()),
            Compression::Gzip => {
                Encoder::Gzip(GzEncoder::new(Vec::new(), flate2::Compression::new(6)))
            }
            // Single-threaded zstd is deterministic: a replay produces the same bytes.
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Plain(v) => v,
            // Draining the output vector only removes bytes the compressor already emitted;
            // it keeps appending after them, so the concatenation stays one valid stream.
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Compressed bytes ready to upload.
    pub(crate) fn output_len(&mut self) -> usize {
        self.output().len()
    }

    /// Takes the compressed bytes emitted so far.
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(self.output())
    }

    /// Ends the stream and returns the remaining bytes.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Plain(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(compression: Compression, decode: impl Fn(&[u8]) -> Vec<u8>) {
        let mut enc = Encoder::new(compression).unwrap();
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20_000 {
            let line = format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", i * 7919 % 104729);
            expected.extend_from_slice(line.as_bytes());
            enc.write_all(line.as_bytes()).unwrap();
            if enc.output_len() > 4096 {
                out.extend(enc.take_output());
            }
        }
        out.extend(enc.finish().unwrap());
        assert_eq!(decode(&out), expected);
    }

    #[test]
    fn drained_gzip_output_concatenates_to_one_valid_stream() {
        roundtrip(Compression::Gzip, |b| {
            let mut s = Vec::new();
            flate2::read::GzDecoder::new(b).read_to_end(&mut s).unwrap();
            s
        });
    }

    #[test]
    fn drained_zstd_output_concatenates_to_one_valid_stream() {
        roundtrip(Compression::Zstd, |b| zstd::stream::decode_all(b).unwrap());
    }

    #[test]
    fn uncompressed_output_is_the_input() {
        roundtrip(Compression::None, |b| b.to_vec());
    }
}
