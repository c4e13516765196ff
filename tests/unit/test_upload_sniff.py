from backend.upload import sniff_container


def test_recognises_common_containers() -> None:
    assert sniff_container(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == (".mp4", "video/mp4")
    assert sniff_container(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00")[0] == ".mov"  # type: ignore[index]
    assert sniff_container(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81")[0] == ".mkv"  # type: ignore[index]
    assert sniff_container(b"RIFF\x00\x00\x00\x00AVI LIST")[0] == ".avi"  # type: ignore[index]


def test_rejects_text_and_images() -> None:
    assert sniff_container(b"hello, this is not a video at all") is None
    assert sniff_container(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") is None
    assert sniff_container(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01") is None
    assert sniff_container(b"") is None
