# The part of google-re2 (module `re2`) that responder uses; the package ships no type information.

class error(Exception): ...

class Options:
    max_mem: int
    log_errors: bool
    case_sensitive: bool
    longest_match: bool
    never_nl: bool
    dot_nl: bool
    never_capture: bool
    perl_classes: bool
    word_boundary: bool
    one_line: bool
    posix_syntax: bool
    literal: bool

class _Match:
    def group(self, group: int | str = 0, /) -> str | None: ...
    def groupdict(self, default: str | None = None) -> dict[str, str | None]: ...
    def span(self, group: int = 0) -> tuple[int, int]: ...

class _Regexp:
    @property
    def pattern(self) -> str: ...
    @property
    def groups(self) -> int: ...
    @property
    def groupindex(self) -> dict[str, int]: ...
    def search(self, text: str, pos: int | None = None, endpos: int | None = None) -> _Match | None: ...

def compile(pattern: str, options: Options | None = None) -> _Regexp: ...
