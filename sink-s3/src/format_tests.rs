//! The encoders of `format.rs`: compression streams drained mid-object, CSV quoting and
//! read-back.

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

/// The uncompressed CSV object of these JSON lines, or the first error.
fn csv_object(options: CsvOptions, lines: &[impl AsRef<[u8]>]) -> Result<String, S3SinkError> {
    let key = Path::from("t.csv");
    let mut enc = ObjectEncoder::new(&Format::Csv(options), Compression::None, &key)?;
    for line in lines {
        enc.write_line(line.as_ref(), &key)?;
    }
    Ok(String::from_utf8(enc.finish(&key)?).unwrap())
}

/// How many rows a CSV reader finds after the header.
fn csv_rows(text: &[u8]) -> usize {
    csv::Reader::from_reader(text).records().count()
}

#[test]
fn csv_rows_follow_the_columns_and_quote_what_rfc_4180_requires() {
    let csv = CsvOptions::new(["id", "name", "tags", "missing"]);
    let lines = [
        r#"{"name":"a, \"b\"","id":7,"tags":["x"],"extra":1}"#,
        r#"{"id":8,"name":"line\nbreak","missing":null}"#,
    ];
    assert_eq!(
        csv_object(csv.clone(), &lines).unwrap(),
        "id,name,tags,missing\n7,\"a, \"\"b\"\"\",\"[\"\"x\"\"]\",\n8,\"line\nbreak\",,\n"
    );
    let err = csv_object(csv, &["[1,2]"]).unwrap_err();
    assert!(matches!(err, S3SinkError::Encode { ref key, .. } if key == "t.csv"));
}

#[test]
fn csv_quotes_fields_holding_the_delimiter_a_quote_or_a_line_break() {
    let csv = CsvOptions::new(["a\tb", "c"]).delimiter(b'\t');
    let lines = [
        r#"{"a\tb":"x,y","c":"tab\there"}"#,
        r#"{"a\tb":"say \"hi\"","c":"cr\rlf\r\n"}"#,
        r#"{"a\tb":"plain","c":" spaced "}"#,
    ];
    assert_eq!(
        csv_object(csv, &lines).unwrap(),
        "\"a\tb\"\tc\nx,y\t\"tab\there\"\n\"say \"\"hi\"\"\"\t\"cr\rlf\r\n\"\nplain\t spaced \n"
    );
}

#[test]
fn csv_numbers_booleans_and_nested_values_are_their_json_text() {
    let line = r#"{"n":-1.5e3,"b":true,"o":{"k":[1,null]},"s":"7"}"#;
    assert_eq!(
        csv_object(CsvOptions::new(["n", "b", "o", "s"]).header(false), &[line]).unwrap(),
        "-1500.0,true,\"{\"\"k\"\":[1,null]}\",7\n"
    );
}

#[test]
fn csv_one_column_row_with_an_empty_field_is_quoted_so_readers_keep_it() {
    let lines = [r#"{"id":1}"#, r#"{"id":null}"#, "{}", r#"{"id":""}"#];
    let text = csv_object(CsvOptions::new(["id"]), &lines).unwrap();
    assert_eq!(text, "id\n1\n\"\"\n\"\"\n\"\"\n");
    assert_eq!(csv_rows(text.as_bytes()), 4);
    // Readers skip an empty line (the hand writer's form of such a row): the row was lost.
    assert_eq!(csv_rows(b"id\n1\n\n"), 1);
}

#[test]
fn csv_output_drained_between_rows_concatenates_to_the_whole_object() {
    let (key, options) = (Path::from("t.csv"), CsvOptions::new(["id", "s"]));
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("{{\"id\":{i},\"s\":\"v,{}\\n\"}}\n", i * 7919 % 104729))
        .collect();
    let mut enc =
        ObjectEncoder::new(&Format::Csv(options.clone()), Compression::Zstd, &key).unwrap();
    let mut drained = Vec::new();
    for line in &lines {
        enc.write_line(line.as_bytes(), &key).unwrap();
        if enc.output_len() > 4096 {
            drained.extend(enc.take_output());
        }
    }
    drained.extend(enc.finish(&key).unwrap());
    let whole = csv_object(options, &lines).unwrap().into_bytes();
    assert_eq!(zstd::stream::decode_all(&drained[..]).unwrap(), whole);
    assert_eq!(csv_rows(&whole), 20_000);
}

proptest::proptest! {
    #[test]
    fn csv_rows_read_back_as_the_field_values(
        fields in proptest::collection::vec("[a-c,;\"\r\n \t]{0,6}", 1..4),
    ) {
        let columns: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
        let record: serde_json::Map<_, _> =
            columns.iter().cloned().zip(fields.iter().map(|f| f.as_str().into())).collect();
        let line = serde_json::to_string(&record).unwrap();
        let text = csv_object(CsvOptions::new(&columns), &[line]).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        proptest::prop_assert_eq!(reader.headers().unwrap(), &columns);
        let rows: Vec<_> = reader.records().collect::<Result<_, _>>().unwrap();
        proptest::prop_assert_eq!(rows, vec![csv::StringRecord::from(fields)]);
    }
}

#[test]
fn uncompressed_output_is_the_input() {
    roundtrip(Compression::None, |b| b.to_vec());
}
