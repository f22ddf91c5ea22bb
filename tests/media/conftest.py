from tests.support.media_factory import encode_audio, make_video, media_dir  # noqa: F401 - fixtures
