//! TouchOSC layout: a page of faders, one per knob, each sending `/knob/<name>` with the
//! fader value scaled to the knob's range. `.tosc` files are zlib-compressed XML; the
//! compression here uses stored (uncompressed) deflate blocks, which every zlib reader accepts.

use std::fmt::Write;

use super::num;
use crate::schema::Schema;

/// The layout as XML (TouchOSC's `lexml` version 3 document).
pub fn touchosc_layout_xml(schema: &Schema) -> String {
    let row = 60;
    let height = 20 + row * schema.knobs().len();
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version='1.0' encoding='UTF-8'?>");
    let _ = writeln!(x, "<lexml version='3'>");
    let _ = writeln!(x, "<node ID='{}' type='GROUP'>", id(0));
    let _ = writeln!(
        x,
        "<properties>{}{}</properties>",
        prop_s("name", "latentd"),
        frame(0, 0, 640, height)
    );
    let _ = writeln!(x, "<children>");
    for (i, k) in schema.knobs().iter().enumerate() {
        let y = 10 + row * i;
        let _ = writeln!(x, "<node ID='{}' type='LABEL'>", id(1000 + i));
        let _ = writeln!(
            x,
            "<properties>{}{}{}</properties>",
            prop_s("name", &format!("label_{}", k.name)),
            prop_s("text", k.name),
            frame(10, y, 150, 50)
        );
        let _ = writeln!(x, "</node>");
        let _ = writeln!(x, "<node ID='{}' type='FADER'>", id(2000 + i));
        let _ = writeln!(
            x,
            "<properties>{}{}<property type='i'><key><![CDATA[orientation]]></key><value>1</value></property></properties>",
            prop_s("name", k.name),
            frame(170, y, 460, 50)
        );
        let default = if k.max > k.min {
            (k.default - k.min) / (k.max - k.min)
        } else {
            0.0
        };
        let _ = writeln!(
            x,
            "<values><value><key><![CDATA[x]]></key><locked>0</locked><lockedDefaultCurrent>0</lockedDefaultCurrent><default><![CDATA[{}]]></default><defaultPull>0</defaultPull></value></values>",
            num(default)
        );
        let conversion = if k.integer { "INTEGER" } else { "FLOAT" };
        let _ = writeln!(
            x,
            "<messages><osc><enabled>1</enabled><send>1</send><receive>1</receive><feedback>0</feedback><connections>00001</connections>\
<triggers><trigger><var><![CDATA[x]]></var><condition>ANY</condition></trigger></triggers>\
<path><partial><type>CONSTANT</type><conversion>STRING</conversion><value><![CDATA[/knob/{}]]></value><scaleMin>0</scaleMin><scaleMax>1</scaleMax></partial></path>\
<arguments><partial><type>VALUE</type><conversion>{conversion}</conversion><value><![CDATA[x]]></value><scaleMin>{}</scaleMin><scaleMax>{}</scaleMax></partial></arguments>\
</osc></messages>",
            k.name,
            num(k.min),
            num(k.max)
        );
        let _ = writeln!(x, "</node>");
    }
    let _ = writeln!(x, "</children>\n</node>\n</lexml>");
    x
}

/// A deterministic node ID in UUID form.
fn id(n: usize) -> String {
    format!("6c61746e-7464-4000-8000-{n:012x}")
}

fn prop_s(key: &str, value: &str) -> String {
    format!(
        "<property type='s'><key><![CDATA[{key}]]></key><value><![CDATA[{value}]]></value></property>"
    )
}

fn frame(x: usize, y: usize, w: usize, h: usize) -> String {
    format!(
        "<property type='r'><key><![CDATA[frame]]></key><value><x>{x}</x><y>{y}</y><w>{w}</w><h>{h}</h></value></property>"
    )
}

/// Wrap `data` in a zlib stream of stored deflate blocks (RFC 1950 / RFC 1951 BTYPE 00).
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_the_rfc_example() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn stored_stream_round_trips_across_blocks() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = zlib_stored(&data);
        assert_eq!(&z[..2], &[0x78, 0x01]);
        assert_eq!(
            (u16::from(z[0]) << 8 | u16::from(z[1])) % 31,
            0,
            "zlib header check bits"
        );
        let mut pos = 2;
        let mut back = Vec::new();
        loop {
            let last = z[pos] & 1 == 1;
            let len = u16::from_le_bytes([z[pos + 1], z[pos + 2]]) as usize;
            let nlen = u16::from_le_bytes([z[pos + 3], z[pos + 4]]);
            assert_eq!(nlen, !(len as u16));
            back.extend_from_slice(&z[pos + 5..pos + 5 + len]);
            pos += 5 + len;
            if last {
                break;
            }
        }
        assert_eq!(back, data);
        assert_eq!(
            u32::from_be_bytes([z[pos], z[pos + 1], z[pos + 2], z[pos + 3]]),
            adler32(&data)
        );
        assert_eq!(pos + 4, z.len());
    }
}
