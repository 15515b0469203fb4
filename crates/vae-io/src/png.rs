//! PNG encoding of 8-bit greyscale and RGB pictures, through the `png` crate.
//!
//! Encoding happens in memory; write the bytes with [`write_atomic`](crate::write_atomic).

use crate::error::{Error, Result};

/// The PNG of a `width x height` greyscale picture: `pixels` holds one byte per pixel, row by
/// row, 0 = black.
pub fn encode_grey(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, pixels, ::png::ColorType::Grayscale)
}

/// The PNG of a `width x height` RGB picture: `pixels` holds three bytes per pixel, row by row.
pub fn encode_rgb(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, pixels, ::png::ColorType::RGB)
}

fn encode(width: usize, height: usize, pixels: &[u8], colour: ::png::ColorType) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadPicture {
        width,
        height,
        colour: match colour {
            ::png::ColorType::Grayscale => "grey",
            _ => "RGB",
        },
        found: pixels.len(),
        reason,
    };
    // PNG's limit on either side is 2^31 - 1.
    let side = |n: usize| u32::try_from(n).ok().filter(|&n| (1..1 << 31).contains(&n));
    let (Some(w), Some(h)) = (side(width), side(height)) else {
        return Err(bad("PNG sides are 1 to 2^31 - 1 pixels".into()));
    };
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(colour.samples()));
    if expected != Some(pixels.len()) {
        return Err(bad(format!(
            "it needs {} bytes",
            expected.map_or("more than usize::MAX".into(), |n| n.to_string())
        )));
    }
    let mut out = Vec::new();
    {
        let mut encoder = ::png::Encoder::new(&mut out, w, h);
        encoder.set_color(colour);
        encoder.set_depth(::png::BitDepth::Eight);
        encoder.set_compression(::png::Compression::Default);
        let mut writer = encoder.write_header().map_err(|e| bad(e.to_string()))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| bad(e.to_string()))?;
        // Dropping the writer appends the IEND chunk.
    }
    Ok(out)
}

/// Decodes an 8-bit PNG into (width, height, bytes per pixel, pixels); for tests.
#[cfg(test)]
pub(crate) fn decode(png: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    let (info, mut reader) = ::png::Decoder::new(png).read_info().unwrap();
    let mut buf = vec![0; info.buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
        buf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_rgb_round_trip() {
        let grey: Vec<u8> = (0..12).map(|i| i * 20).collect();
        let png = encode_grey(4, 3, &grey).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode(&png), (4, 3, 1, grey));
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| i * 7).collect();
        assert_eq!(decode(&encode_rgb(2, 3, &rgb).unwrap()), (2, 3, 3, rgb));
    }

    #[test]
    fn bad_sizes_are_errors_with_the_values() {
        let msg = encode_grey(4, 3, &[0; 11]).unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot encode a 4x3 grey picture from 11 bytes: it needs 12 bytes"
        );
        let msg = encode_rgb(0, 3, &[]).unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot encode a 0x3 RGB picture from 0 bytes: PNG sides are 1 to 2^31 - 1 pixels"
        );
        assert!(encode_grey(usize::MAX, 2, &[]).is_err());
    }
}
