//! Settings the builder refuses.

use super::*;

#[test]
fn settings_that_cannot_work_are_refused_at_build() {
    let store = memory();
    let small_parts = S3Sink::<Ev>::s3(store.clone(), "out")
        .part_size(1024)
        .build();
    assert!(matches!(small_parts, Err(S3SinkError::Config(_))));
    let bad_template = S3Sink::<Ev>::s3(store.clone(), "out")
        .partition_template("dt={day_of_week}")
        .build();
    assert!(matches!(bad_template, Err(S3SinkError::Config(_))));
    let too_many_parts = S3Sink::<Ev>::s3(store, "out")
        .max_object_bytes(1 << 40)
        .part_size(5 << 20)
        .build();
    assert!(matches!(too_many_parts, Err(S3SinkError::Config(_))));
}
