use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::outputs::segments::check::{Violation, check_playlist, check_playlist_update};

/// Go's test start: `time.Unix(0, 1683154504814142000)`.
fn go_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(1_683_154_504_814_142_000)
}

fn seg(uri: &str, duration: f64, at: SystemTime) -> Segment {
    Segment {
        uri: uri.into(),
        duration,
        program_date_time: at,
        discontinuity: false,
    }
}

/// Parses with m3u8-rs (a maintained parser) and checks with our RFC checker.
fn assert_valid(text: &str) -> m3u8_rs::MediaPlaylist {
    let (_, violations) = check_playlist(text);
    assert!(violations.is_empty(), "{violations:?}\n{text}");
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("m3u8-rs: {other:?}\n{text}"),
    }
}

/// Go's `TestEventPlaylistWriter`, byte for byte.
#[test]
fn go_event_playlist() {
    let mut p = Playlist::event(6);
    let mut now = go_now();
    for i in 0..3 {
        p.append(&seg(&format!("playlist_0000{i}.ts"), 5.994, now))
            .unwrap();
        now += Duration::from_millis(5994);
    }
    p.end();
    let expected = "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-ALLOW-CACHE:NO\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:04.814Z\n#EXTINF:5.994,\nplaylist_00000.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:10.808Z\n#EXTINF:5.994,\nplaylist_00001.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:16.802Z\n#EXTINF:5.994,\nplaylist_00002.ts\n#EXT-X-ENDLIST\n";
    assert_eq!(p.render(), expected);
    let parsed = assert_valid(&p.render());
    assert_eq!(parsed.segments.len(), 3);
    assert!(parsed.end_list);
    assert_eq!(
        parsed.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Event)
    );
}

/// Go's `TestLivePlaylistWriter` (window 3). Go's expected final text lists
/// `playlist_00001.ts` with the PDT of segment 0 (04.814), which its own writer cannot produce
/// (segment 1 was appended at 10.808); we assert what the writer does.
#[test]
fn go_live_playlist() {
    let mut p = Playlist::live(6, 3).unwrap();
    let mut now = go_now();
    for i in 0..2 {
        p.append(&seg(&format!("playlist_0000{i}.ts"), 5.994, now))
            .unwrap();
        now += Duration::from_millis(5994);
    }
    let expected = "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-ALLOW-CACHE:NO\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:04.814Z\n#EXTINF:5.994,\nplaylist_00000.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:10.808Z\n#EXTINF:5.994,\nplaylist_00001.ts\n";
    assert_eq!(p.render(), expected);
    for i in 2..4 {
        p.append(&seg(&format!("playlist_0000{i}.ts"), 5.994, now))
            .unwrap();
        now += Duration::from_millis(5994);
    }
    p.end();
    let expected = "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-ALLOW-CACHE:NO\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:10.808Z\n#EXTINF:5.994,\nplaylist_00001.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:16.802Z\n#EXTINF:5.994,\nplaylist_00002.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:22.796Z\n#EXTINF:5.994,\nplaylist_00003.ts\n#EXT-X-ENDLIST\n";
    assert_eq!(p.render(), expected);
    let parsed = assert_valid(&p.render());
    assert_eq!(parsed.media_sequence, 1);
}

#[test]
fn pdt_format_is_gos() {
    let at = |nanos: u64| format_program_date_time(UNIX_EPOCH + Duration::from_nanos(nanos));
    assert_eq!(at(1_683_154_504_814_142_000), "2023-05-03T22:55:04.814Z");
    assert_eq!(
        at(1_683_154_504_000_000_000),
        "2023-05-03T22:55:04Z",
        "no fraction when zero"
    );
    assert_eq!(
        at(1_683_154_504_500_000_000),
        "2023-05-03T22:55:04.5Z",
        "trailing zeros trimmed"
    );
    assert_eq!(at(1_683_154_504_050_000_000), "2023-05-03T22:55:04.05Z");
    assert_eq!(
        at(1_683_154_504_999_999_999),
        "2023-05-03T22:55:04.999Z",
        "truncated, not rounded"
    );
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
}

#[test]
fn extinf_format_is_gos_float32() {
    assert_eq!(format_extinf(5.994).as_deref(), Some("5.994"));
    assert_eq!(format_extinf(4.0).as_deref(), Some("4.000"));
    assert_eq!(format_extinf(4.0333333).as_deref(), Some("4.033"));
    assert_eq!(format_extinf(0.0).as_deref(), Some("0.000"));
    // 4.0625 is exact in binary: a tie, rounded to even like Go.
    assert_eq!(format_extinf(4.0625).as_deref(), Some("4.062"));
    assert_eq!(format_extinf(-1.0), None);
    assert_eq!(format_extinf(f64::NAN), None);
    assert_eq!(format_extinf(f64::INFINITY), None);
    assert_eq!(format_extinf(1e300), None, "beyond float32");
}

/// #534: target 6 with segments of 7.078 and 8.138 s. Go writes TARGETDURATION:6; we raise it.
#[test]
fn target_duration_covers_long_segments() {
    let mut p = Playlist::event(6);
    let t = go_now();
    assert!(!p.append(&seg("a.ts", 6.0, t)).unwrap());
    assert!(
        p.append(&seg("b.ts", 7.078, t + Duration::from_millis(6000)))
            .unwrap(),
        "grew to 7"
    );
    assert!(
        p.append(&seg("c.ts", 8.138, t + Duration::from_millis(13078)))
            .unwrap(),
        "grew to 8"
    );
    assert!(
        !p.append(&seg("d.ts", 8.4, t + Duration::from_millis(21216)))
            .unwrap(),
        "8.4 rounds to 8"
    );
    assert!(
        p.append(&seg("e.ts", 8.5, t + Duration::from_millis(29616)))
            .unwrap(),
        "8.5 rounds up to 9"
    );
    assert_eq!(p.target_duration(), 9);
    assert!(p.render().contains("#EXT-X-TARGETDURATION:9\n"));
    assert_valid(&p.render());
}

#[test]
fn frame_timing_does_not_lift_the_target() {
    let mut p = Playlist::event(4);
    let mut t = go_now();
    for i in 0..10 {
        let d = if i % 2 == 0 { 4.033 } else { 3.967 };
        assert!(!p.append(&seg(&format!("s_{i:05}.ts"), d, t)).unwrap());
        t += Duration::from_secs_f64(d);
    }
    assert_eq!(p.target_duration(), 4);
    assert_valid(&p.render());
}

#[test]
fn initial_target_headroom() {
    let p = Playlist::event(4).with_initial_target(6);
    assert_eq!(p.target_duration(), 6);
    assert_eq!(
        Playlist::event(4).with_initial_target(2).target_duration(),
        4
    );
}

#[test]
fn live_window_slides_and_keeps_the_largest_target() {
    let mut p = Playlist::live(4, 5).unwrap();
    let mut t = go_now();
    let mut previous = check_playlist(&p.render()).0;
    for i in 0..12u64 {
        let d = if i == 1 { 6.2 } else { 4.0 };
        p.append(&seg(&format!("x_{i:05}.ts"), d, t)).unwrap();
        t += Duration::from_secs_f64(d);
        let text = p.render();
        let m = assert_valid(&text);
        assert_eq!(m.segments.len(), (i as usize + 1).min(5));
        assert_eq!(p.media_sequence(), (i + 1).saturating_sub(5));
        assert_eq!(m.media_sequence, p.media_sequence());
        // The sequence number of each listed segment is its INDEX.
        for (k, s) in m.segments.iter().enumerate() {
            assert_eq!(s.uri, format!("x_{:05}.ts", m.media_sequence + k as u64));
        }
        let (parsed, _) = check_playlist(&text);
        let changes: Vec<_> = check_playlist_update(&previous, &parsed)
            .into_iter()
            .filter(|v| !matches!(v, Violation::TargetDurationChanged { .. }))
            .collect();
        assert!(changes.is_empty(), "{changes:?}");
        previous = parsed;
    }
    assert_eq!(
        p.target_duration(),
        6,
        "the 6.2 s segment left the window; the target stays"
    );
    p.end();
    assert!(p.render().ends_with("#EXT-X-ENDLIST\n"));
}

#[test]
fn discontinuity_and_its_sequence() {
    let mut p = Playlist::live(4, 2).unwrap();
    let t = go_now();
    p.append(&seg("a.ts", 4.0, t)).unwrap();
    // A crash resume: a later wall clock, flagged.
    let resumed = Segment {
        discontinuity: true,
        ..seg("b.ts", 4.0, t + Duration::from_secs(60))
    };
    p.append(&resumed).unwrap();
    let text = p.render();
    assert!(
        text.contains("#EXTINF:4.000,\na.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"),
        "{text}"
    );
    assert!(
        !text.contains("DISCONTINUITY-SEQUENCE"),
        "written only when non-zero"
    );
    let m = assert_valid(&text);
    assert!(m.segments[1].discontinuity);
    p.append(&seg("c.ts", 4.0, t + Duration::from_secs(64)))
        .unwrap();
    assert!(
        !p.render().contains("DISCONTINUITY-SEQUENCE"),
        "a.ts had no discontinuity"
    );
    p.append(&seg("d.ts", 4.0, t + Duration::from_secs(68)))
        .unwrap();
    let text = p.render();
    assert!(
        text.contains("#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
        "{text}"
    );
    assert_eq!(assert_valid(&text).discontinuity_sequence, 1);
}

#[test]
fn pdt_gap_without_discontinuity_is_a_violation() {
    let mut p = Playlist::event(4);
    let t = go_now();
    p.append(&seg("a.ts", 4.0, t)).unwrap();
    p.append(&seg("b.ts", 4.0, t + Duration::from_secs(60)))
        .unwrap();
    let (_, v) = check_playlist(&p.render());
    assert_eq!(
        v,
        vec![Violation::PdtGap {
            uri: "b.ts".into(),
            expected_ms: 4000,
            found_ms: 60000
        }]
    );
}

#[test]
fn refused_segments_change_nothing() {
    let mut both = HlsPlaylists::new(4, Some(DEFAULT_LIVE_WINDOW)).unwrap();
    let t = go_now();
    both.append(&seg("a.ts", 4.0, t)).unwrap();
    let before = (both.main.render(), both.live.as_ref().unwrap().render());
    assert_eq!(
        both.append(&seg("a.ts", 4.0, t)),
        Err(PlaylistError::DuplicateUri("a.ts".into()))
    );
    assert!(matches!(
        both.append(&seg("b.ts", -1.0, t)),
        Err(PlaylistError::InvalidDuration { .. })
    ));
    assert!(matches!(
        both.append(&seg("b.ts", f64::NAN, t)),
        Err(PlaylistError::InvalidDuration { .. })
    ));
    assert_eq!(
        before,
        (both.main.render(), both.live.as_ref().unwrap().render())
    );
    both.end();
    both.end();
    assert_eq!(
        both.append(&seg("b.ts", 4.0, t)),
        Err(PlaylistError::Ended("b.ts".into()))
    );
    assert_eq!(both.main.render().matches("#EXT-X-ENDLIST").count(), 1);
    assert_eq!(
        Playlist::live(4, 0).unwrap_err(),
        PlaylistError::EmptyWindow
    );
    assert!(HlsPlaylists::new(4, None).unwrap().live.is_none());
}

#[test]
fn empty_playlists_are_valid() {
    let mut p = Playlist::event(4);
    assert_valid(&p.render());
    p.end();
    assert_valid(&p.render());
    let mut l = Playlist::live(4, 5).unwrap();
    l.end();
    assert_valid(&l.render());
}

#[test]
fn unicode_uris_and_huge_durations() {
    let mut p = Playlist::event(4);
    let t = go_now();
    p.append(&seg("directory/émission_00000.ts", 4.0, t))
        .unwrap();
    p.append(&seg(
        "directory/émission_00001.ts",
        100_000.0,
        t + Duration::from_secs(4),
    ))
    .unwrap();
    assert_eq!(p.target_duration(), 100_000);
    let m = assert_valid(&p.render());
    assert_eq!(m.segments[0].uri, "directory/émission_00000.ts");
}

#[test]
fn long_event_playlist_stays_valid_and_appends_only() {
    let mut p = Playlist::event(4);
    let mut t = go_now();
    let mut prev = check_playlist(&p.render()).0;
    for i in 0..2000u64 {
        p.append(&seg(
            &format!("long_{i:05}.ts"),
            4.0 + (i % 3) as f64 * 0.01,
            t,
        ))
        .unwrap();
        t += Duration::from_secs_f64(4.0 + (i % 3) as f64 * 0.01);
        if i % 250 == 0 {
            let (parsed, v) = check_playlist(&p.render());
            assert!(v.is_empty(), "{v:?}");
            assert!(check_playlist_update(&prev, &parsed).is_empty());
            prev = parsed;
        }
    }
    let (parsed, v) = check_playlist(&p.render());
    assert!(v.is_empty());
    assert_eq!(parsed.segments.len(), 2000);
    assert!(
        (parsed.total_duration() - 8019.99).abs() < 0.001,
        "{}",
        parsed.total_duration()
    );
}

#[test]
fn update_checker_catches_bad_sequences() {
    let t = go_now();
    let mut live = Playlist::live(4, 3).unwrap();
    for i in 0..3 {
        live.append(&seg(
            &format!("s{i}.ts"),
            4.0,
            t + Duration::from_secs(4 * i),
        ))
        .unwrap();
    }
    let prev = check_playlist(&live.render()).0;
    // A window that dropped a middle segment, and one whose MEDIA-SEQUENCE did not advance.
    let hole = prev.clone();
    let mut hole_next = hole.clone();
    hole_next.segments.remove(1);
    assert!(
        check_playlist_update(&prev, &hole_next).contains(&Violation::WindowNotSliding {
            uri: "s1.ts".into()
        })
    );
    let mut stuck = prev.clone();
    stuck.segments.remove(0);
    let v = check_playlist_update(&prev, &stuck);
    assert!(
        v.contains(&Violation::SequenceNumberChanged {
            uri: "s1.ts".into(),
            from: 1,
            to: 0
        }),
        "{v:?}"
    );
    let mut back = prev.clone();
    back.media_sequence = 0;
    let mut fwd = prev.clone();
    fwd.media_sequence = 3;
    assert!(
        check_playlist_update(&fwd, &back)
            .contains(&Violation::MediaSequenceDecreased { from: 3, to: 0 })
    );
    // EVENT playlists never lose a segment; nothing changes after ENDLIST.
    let mut event = Playlist::event(4);
    event.append(&seg("e0.ts", 4.0, t)).unwrap();
    let before = check_playlist(&event.render()).0;
    let mut lost = before.clone();
    lost.segments.clear();
    assert_eq!(
        check_playlist_update(&before, &lost),
        vec![Violation::EventSegmentRemoved {
            uri: "e0.ts".into()
        }]
    );
    event.end();
    let ended = check_playlist(&event.render()).0;
    let mut after = ended.clone();
    after.end_list = false;
    assert!(check_playlist_update(&ended, &after).contains(&Violation::ChangedAfterEndlist));
}

#[test]
fn checker_flags_broken_text() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.6,\na.ts\n#EXTINF:4.0,\na.ts\nb.ts\n#EXT-X-ENDLIST\n#EXTINF:4.0,\n";
    let (_, v) = check_playlist(text);
    for expected in [
        Violation::RepeatedTag {
            line: 3,
            tag: "#EXT-X-TARGETDURATION",
        },
        Violation::MissingExtinf { line: 8 },
        Violation::EndlistNotLast { line: 9 },
        Violation::MissingUri { line: 10 },
        Violation::DuplicateUri { uri: "a.ts".into() },
    ] {
        assert!(v.contains(&expected), "{expected:?} not in {v:?}");
    }
    let (_, v) = check_playlist("#EXT-X-VERSION:4\n#EXTINF:4.6,\na.ts\n");
    assert!(
        v.contains(&Violation::MissingHeader) && v.contains(&Violation::MissingTargetDuration),
        "{v:?}"
    );
    let (_, v) = check_playlist(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.5,\na.ts\n#EXT-X-PROGRAM-DATE-TIME:nope\n",
    );
    assert!(
        v.contains(&Violation::ExtinfOverTarget {
            uri: "a.ts".into(),
            extinf: 4.5,
            target: 4
        }),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::BadValue { line: 5, .. })),
        "{v:?}"
    );
    assert!(v.iter().all(|x| !x.to_string().is_empty()));
    let (_, v) = check_playlist(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:04Z\n#EXTINF:4,\na.ts\n#EXT-X-PROGRAM-DATE-TIME:2023-05-03T22:55:04Z\n#EXTINF:4,\nb.ts\n",
    );
    assert_eq!(v, vec![Violation::PdtNotIncreasing { uri: "b.ts".into() }]);
    let _ = check_playlist("");
    let _ = check_playlist("\u{feff}#EXTM3U\n🎥\n#EXTINF:,\n#EXTINF:-1,x\n");
}
