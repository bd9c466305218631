// npz.cc — see npz.h.  The zip records are PKWARE's APPNOTE 6.3 (local file header, central
// directory header, end of central directory, zip64 end record and locator); the .npy header is
// numpy's format 1.0/2.0 (numpy/lib/format.py).
#include "npz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <new>
#include <set>

#include "weights_file.h"  // dtype_name, dtype_bytes, shape_text, quote

namespace graphc {
namespace aot {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kLocator64Sig = 0x07064b50;
constexpr uint64_t kLocalBytes = 30, kCentralBytes = 46, kEndBytes = 22, kEnd64Bytes = 56, kLocator64Bytes = 20;
constexpr uint32_t kMax32 = 0xffffffffu;
constexpr uint16_t kMax16 = 0xffffu;
const char kSuffix[] = ".npy";
const char kNpyMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

bool little_endian_host() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

// ---------------------------------------------------------------------------------------------
// Little-endian encoding and decoding.

void put16(std::string& s, uint64_t v) {
  s += char(v & 0xff);
  s += char((v >> 8) & 0xff);
}
void put32(std::string& s, uint64_t v) {
  put16(s, v & 0xffff);
  put16(s, (v >> 16) & 0xffff);
}
void put64(std::string& s, uint64_t v) {
  put32(s, v & kMax32);
  put32(s, v >> 32);
}
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) { return uint32_t(get16(p)) | (uint32_t(get16(p + 2)) << 16); }
uint64_t get64(const uint8_t* p) { return uint64_t(get32(p)) | (uint64_t(get32(p + 4)) << 32); }


std::string io_error(const std::string& what) { return what + ": " + std::strerror(errno); }

uint64_t element_count(const std::vector<int64_t>& dims, bool* ok) {
  uint64_t n = 1;
  *ok = true;
  for (int64_t d : dims) {
    if (d < 0) *ok = false;
    const uint64_t u = d < 0 ? 0 : uint64_t(d);
    if (u != 0 && n > UINT64_MAX / u) *ok = false;
    n *= u;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Writing.

// The .npy descr of a graphc dtype in this machine's byte order.
std::string descr_of(int32_t dtype) {
  const char order = little_endian_host() ? '<' : '>';
  switch (dtype) {
    case 1: return std::string(1, order) + "f4";
    case 2: return std::string(1, order) + "f8";
    case 3: return std::string(1, order) + "i4";
    case 4: return std::string(1, order) + "i8";
    case 5: return "|b1";
    default: return "";
  }
}

// numpy's format 1.0 header (2.0 when the dict does not fit 65535 bytes), padded with spaces and
// a newline so the data starts at a multiple of 64, as numpy.lib.format writes it.
std::string npy_header(int32_t dtype, const std::vector<int64_t>& dims) {
  std::string dict = "{'descr': '" + descr_of(dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_text(dims.data(), int32_t(dims.size())) + ", }";
  const uint64_t hlen = dict.size() + 1;  // with the newline
  const bool v2 = 10 + hlen + 64 > 65535;
  const uint64_t prefix = v2 ? 12 : 10;
  const uint64_t pad = 64 - (prefix + hlen) % 64;
  std::string h(kNpyMagic, 6);
  h += char(v2 ? 2 : 1);
  h += char(0);
  if (v2) {
    put32(h, hlen + pad);
  } else {
    put16(h, hlen + pad);
  }
  h += dict;
  h.append(pad, ' ');
  h += '\n';
  return h;
}

bool ascii(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

struct Member {
  std::string fname;  // "<name>.npy"
  std::string header;
  const uint8_t* data;
  uint64_t nbytes;
  uint32_t crc;
  uint64_t size;      // header + data
  uint64_t offset;    // of its local header
};

// write() all of it; errno set on failure.
bool write_all(int fd, const void* p, uint64_t n) {
  const uint8_t* q = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const size_t chunk = n > (1u << 30) ? (1u << 30) : size_t(n);
    const ssize_t w = ::write(fd, q, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    q += w;
    n -= uint64_t(w);
  }
  return true;
}

// 1980-01-01 00:00:00, the earliest DOS time: a fixed stamp, so the same state gives the same
// bytes.
constexpr uint16_t kDosTime = 0, kDosDate = (0 << 9) | (1 << 5) | 1;

}  // namespace

uint32_t crc32(uint32_t crc, const void* data, size_t n) noexcept {
  static const struct Table {
    uint32_t t[256];
    Table() {
      for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
      }
    }
  } table;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void write_npz_atomic(const std::string& path, const std::vector<NpzTensor>& tensors, bool force_zip64) {
  const std::string where = "checkpoint " + quote(path);
  static const int64_t kMarkerValue = kCheckpointVersion;
  std::vector<Member> members;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, int32_t dtype, const std::vector<int64_t>& dims, const void* data,
                 uint64_t nbytes) {
    bool ok = false;
    const uint64_t count = element_count(dims, &ok);
    const uint64_t item = dtype_bytes(dtype);
    if (item == 0) throw Error(kArgument, where + ": tensor " + quote(name) + " has dtype " + std::to_string(dtype));
    if (!ok || count > UINT64_MAX / item || count * item != nbytes) {
      throw Error(kArgument, where + ": tensor " + quote(name) + " is " + dtype_name(dtype) + " " +
                                 shape_text(dims.data(), int32_t(dims.size())) + " but has " + std::to_string(nbytes) +
                                 " bytes");
    }
    if (data == nullptr && nbytes > 0) throw Error(kArgument, where + ": tensor " + quote(name) + " has no data");
    if (!seen.insert(name).second) throw Error(kArgument, where + ": two tensors are named " + quote(name));
    Member m;
    m.fname = name + kSuffix;
    if (m.fname.size() > kMax16) throw Error(kArgument, where + ": tensor name " + quote(name) + " is too long");
    m.header = npy_header(dtype, dims);
    m.data = static_cast<const uint8_t*>(data);
    m.nbytes = nbytes;
    m.crc = crc32(crc32(0, m.header.data(), m.header.size()), data, size_t(nbytes));
    m.size = m.header.size() + nbytes;
    m.offset = 0;
    members.push_back(std::move(m));
  };
  for (const NpzTensor& t : tensors) {
    if (t.name == kCheckpointMarker) {
      throw Error(kArgument, where + ": a variable may not be named '" + std::string(kCheckpointMarker) + "'");
    }
    add(t.name, t.dtype, t.dims, t.data, t.nbytes);
  }
  add(kCheckpointMarker, 4, {}, &kMarkerValue, 8);

  // Lay the archive out, then write it piece by piece (the tensors are not copied).
  std::vector<std::string> locals(members.size());
  uint64_t pos = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    Member& m = members[i];
    m.offset = pos;
    const bool zip64 = force_zip64 || m.size >= kMax32;
    std::string& h = locals[i];
    put32(h, kLocalSig);
    put16(h, zip64 ? 45 : 20);
    put16(h, ascii(m.fname) ? 0 : 0x800);
    put16(h, 0);  // stored
    put16(h, kDosTime);
    put16(h, kDosDate);
    put32(h, m.crc);
    put32(h, zip64 ? kMax32 : m.size);
    put32(h, zip64 ? kMax32 : m.size);
    put16(h, m.fname.size());
    put16(h, zip64 ? 20 : 0);
    h += m.fname;
    if (zip64) {
      put16(h, 1);
      put16(h, 16);
      put64(h, m.size);
      put64(h, m.size);
    }
    pos += h.size() + m.size;
  }
  const uint64_t cd_offset = pos;
  std::string central;
  bool need64 = force_zip64 || members.size() >= kMax16;
  for (const Member& m : members) {
    const bool big_size = force_zip64 || m.size >= kMax32;
    const bool big_offset = force_zip64 || m.offset >= kMax32;
    std::string extra;
    if (big_size || big_offset) {
      std::string fields;
      if (big_size) {
        put64(fields, m.size);
        put64(fields, m.size);
      }
      if (big_offset) put64(fields, m.offset);
      put16(extra, 1);
      put16(extra, fields.size());
      extra += fields;
      need64 = true;
    }
    put32(central, kCentralSig);
    put16(central, (3 << 8) | 45);  // made by: Unix, zip 4.5
    put16(central, big_size || big_offset ? 45 : 20);
    put16(central, ascii(m.fname) ? 0 : 0x800);
    put16(central, 0);
    put16(central, kDosTime);
    put16(central, kDosDate);
    put32(central, m.crc);
    put32(central, big_size ? kMax32 : m.size);
    put32(central, big_size ? kMax32 : m.size);
    put16(central, m.fname.size());
    put16(central, extra.size());
    put16(central, 0);  // comment
    put16(central, 0);  // disk
    put16(central, 0);  // internal attributes
    put32(central, uint32_t(0100644) << 16);  // a regular file, rw-r--r--
    put32(central, big_offset ? kMax32 : m.offset);
    central += m.fname;
    central += extra;
  }
  const uint64_t cd_size = central.size();
  need64 = need64 || cd_offset >= kMax32 || cd_size >= kMax32;
  std::string end;
  if (need64) {
    const uint64_t end64_offset = cd_offset + cd_size;
    put32(end, kEnd64Sig);
    put64(end, kEnd64Bytes - 12);
    put16(end, (3 << 8) | 45);
    put16(end, 45);
    put32(end, 0);
    put32(end, 0);
    put64(end, members.size());
    put64(end, members.size());
    put64(end, cd_size);
    put64(end, cd_offset);
    put32(end, kLocator64Sig);
    put32(end, 0);
    put64(end, end64_offset);
    put32(end, 1);
  }
  put32(end, kEndSig);
  put16(end, 0);
  put16(end, 0);
  put16(end, std::min<uint64_t>(members.size(), kMax16));
  put16(end, std::min<uint64_t>(members.size(), kMax16));
  put32(end, std::min<uint64_t>(cd_size, kMax32));
  put32(end, std::min<uint64_t>(cd_offset, kMax32));
  put16(end, 0);

  // pid and a per-process count: two contexts saving at once never share a temporary file.  The
  // name is predictable, so it is created afresh (O_EXCL: never an existing file, nor a link
  // someone planted there, which O_TRUNC would follow and overwrite); a taken name moves on to
  // the next count.
  static std::atomic<uint64_t> saves{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(saves++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);  // umask applies
    if (fd >= 0 || errno != EEXIST) break;
  }
  if (fd < 0) throw Error(kIo, io_error(where + ": cannot create " + quote(tmp)));
  std::string err;  // the first failure
  auto check = [&](bool good, const char* what) {
    if (!good && err.empty()) err = io_error(where + ": cannot " + what + " " + quote(tmp));
    return good;
  };
  // A replaced checkpoint keeps its mode (as graphc.fileio.atomic_write does).
  struct stat old;
  bool ok = !(::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) ||
            check(::fchmod(fd, old.st_mode & 07777) == 0, "set the mode of");
  for (size_t i = 0; ok && i < members.size(); ++i) {
    const Member& m = members[i];
    ok = check(write_all(fd, locals[i].data(), locals[i].size()) && write_all(fd, m.header.data(), m.header.size()) &&
                   write_all(fd, m.data, m.nbytes),
               "write");
  }
  ok = ok && check(write_all(fd, central.data(), central.size()) && write_all(fd, end.data(), end.size()), "write");
  ok = ok && check(::fsync(fd) == 0, "flush");
  ok = check(::close(fd) == 0, "close") && ok;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = io_error(where + ": cannot rename " + quote(tmp) + " over it");
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw Error(kIo, err);
  }
  // Make the rename itself durable where the system allows fsync of a folder.
  const size_t slash = path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(folder.c_str(), O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading.

namespace {

struct ZipMember {
  std::string fname;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize, offset;
  const uint8_t* data = nullptr;  // its bytes, once the local header is checked
};

// A parsed .npy header.
struct NpyHeader {
  std::string descr;   // "" when the descr is not a string (a structured dtype)
  bool fortran = false;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;  // from the member's start
};

// What a descr is: its graphc dtype when it is one (0 if not), byte order, item size, a name.
struct Descr {
  int32_t dtype = 0;
  bool swap = false;      // the other byte order than this machine's
  bool integer = false;   // any integer kind (for the marker)
  bool is_signed = false;
  uint64_t item = 0;
  std::string name;       // numpy's name: "float32", "uint16", ...
  bool object = false;
};

Descr parse_descr(const std::string& d) {
  Descr r;
  r.name = quote(d);
  if (d.size() < 3) {
    if (d == "|O" || d == "O") r.object = true;
    return r;
  }
  const char order = d[0];
  const char kind = d[1];
  if (order != '<' && order != '>' && order != '|' && order != '=') return r;
  uint64_t item = 0;
  for (size_t i = 2; i < d.size(); ++i) {
    if (d[i] < '0' || d[i] > '9' || item > 1000) return r;
    item = item * 10 + uint64_t(d[i] - '0');
  }
  r.item = item;
  const bool host_little = little_endian_host();
  r.swap = item > 1 && ((order == '<' && !host_little) || (order == '>' && host_little));
  std::string base;
  if (kind == 'f' && (item == 2 || item == 4 || item == 8 || item == 16)) {
    base = "float" + std::to_string(8 * item);
    r.dtype = item == 4 ? 1 : item == 8 ? 2 : 0;
  } else if ((kind == 'i' || kind == 'u') && (item == 1 || item == 2 || item == 4 || item == 8)) {
    base = std::string(kind == 'u' ? "uint" : "int") + std::to_string(8 * item);
    r.integer = true;
    r.is_signed = kind == 'i';
    if (kind == 'i') r.dtype = item == 4 ? 3 : item == 8 ? 4 : 0;
  } else if (kind == 'b' && item == 1) {
    base = "bool";
    r.dtype = 5;
  } else if (kind == 'c' && (item == 8 || item == 16)) {
    base = "complex" + std::to_string(8 * item);
  } else if (kind == 'O') {
    r.object = true;
    return r;
  } else {
    return r;
  }
  if (item > 1 && (order == '<' || order == '>') && r.swap) {
    r.name = base + " (" + (order == '>' ? "big-endian " : "little-endian ") + quote(d) + ")";
  } else {
    r.name = base;
  }
  if (item > 1 && order == '|') r.dtype = 0;  // numpy refuses '|f4'
  return r;
}

// A small reader of the Python literal numpy writes as a .npy header: a dict of str keys whose
// values are str, True/False, or a tuple of ints (lists and nested tuples are parsed to be
// refused).  Throws std::string on a syntax error.
class Literal {
 public:
  explicit Literal(const std::string& s) : s_(s) {}

  void header(NpyHeader* h) {
    ws();
    expect('{');
    std::set<std::string> keys;
    bool descr_string = true;
    for (;;) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = string();
      ws();
      expect(':');
      ws();
      if (!keys.insert(key).second) throw std::string("key " + quote(key) + " appears twice");
      if (key == "descr") {
        if (peek() == '\'' || peek() == '"') {
          h->descr = string();
        } else {
          skip_value();
          descr_string = false;
        }
      } else if (key == "fortran_order") {
        if (word("True")) {
          h->fortran = true;
        } else if (word("False")) {
          h->fortran = false;
        } else {
          throw std::string("fortran_order is not a bool");
        }
      } else if (key == "shape") {
        shape(&h->shape);
      } else {
        skip_value();
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect('}');
      break;
    }
    ws();
    if (i_ != s_.size()) throw std::string("text after the header's dict");
    if (keys != std::set<std::string>{"descr", "fortran_order", "shape"}) {
      throw std::string("the header does not hold exactly the keys 'descr', 'fortran_order', 'shape'");
    }
    if (!descr_string) h->descr.clear();
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) throw std::string("expected '") + c + "' at character " + std::to_string(i_);
    ++i_;
  }
  bool word(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    const char next = i_ + n < s_.size() ? s_[i_ + n] : '\0';
    if (std::isalnum(static_cast<unsigned char>(next)) || next == '_') return false;
    i_ += n;
    return true;
  }
  std::string string() {
    const char q = peek();
    if (q != '\'' && q != '"') throw std::string("expected a string at character " + std::to_string(i_));
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') {
        if (i_ + 1 >= s_.size()) break;
        const char e = s_[i_ + 1];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        i_ += 2;
      } else {
        out += s_[i_++];
      }
    }
    if (i_ >= s_.size()) throw std::string("unterminated string");
    ++i_;
    return out;
  }
  void shape(std::vector<int64_t>* dims) {
    expect('(');
    for (;;) {
      ws();
      if (peek() == ')') {
        ++i_;
        return;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) throw std::string("shape is not a tuple of ints");
      uint64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (uint64_t(INT64_MAX) - 9) / 10) throw std::string("a dimension is too large");
        v = v * 10 + uint64_t(s_[i_++] - '0');
      }
      dims->push_back(int64_t(v));
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      // "(5)" is the int 5 in Python, not a tuple
      if (dims->size() == 1) throw std::string("shape is not a tuple of ints");
      expect(')');
      return;
    }
  }
  void skip_value() {
    int depth = 0;
    do {
      ws();
      const char c = peek();
      if (c == '\0') throw std::string("unterminated value");
      if (c == '\'' || c == '"') {
        string();
      } else if (c == '(' || c == '[' || c == '{') {
        ++depth;
        ++i_;
      } else if (c == ')' || c == ']' || c == '}') {
        if (depth == 0) return;
        --depth;
        ++i_;
      } else if (c == ',' && depth == 0) {
        return;
      } else {
        ++i_;
      }
    } while (depth > 0 || (peek() != ',' && peek() != '}'));
  }

  const std::string& s_;
  size_t i_ = 0;
};

class Reader {
 public:
  Reader(const uint8_t* p, uint64_t n, const std::string& where) : p_(p), n_(n), where_(where) {}

  [[noreturn]] void fail(const std::string& what) const { throw Error(kCheckpoint, where_ + what); }

  std::map<std::string, ZipMember> members() {
    // The end of central directory record: the last one within the final 64 KiB + 22 bytes.
    if (n_ < kEndBytes) fail(" is not a graphc checkpoint (not a zip archive, or a truncated one)");
    uint64_t eocd = n_;
    const uint64_t lowest = n_ - kEndBytes > 65535 ? n_ - kEndBytes - 65535 : 0;
    for (uint64_t at = n_ - kEndBytes + 1; at-- > lowest;) {
      if (get32(p_ + at) == kEndSig) {
        eocd = at;
        break;
      }
    }
    if (eocd == n_) fail(" is not a graphc checkpoint (not a zip archive, or a truncated one)");
    const uint8_t* e = p_ + eocd;
    uint64_t disk = get16(e + 4), cd_disk = get16(e + 6), entries_disk = get16(e + 8), entries = get16(e + 10);
    uint64_t cd_size = get32(e + 12), cd_offset = get32(e + 16);
    uint64_t cd_end = eocd;  // where the central directory must end
    if (eocd >= kLocator64Bytes && get32(p_ + eocd - kLocator64Bytes) == kLocator64Sig) {
      const uint8_t* l = p_ + eocd - kLocator64Bytes;
      const uint64_t e64 = get64(l + 8);
      if (get32(l + 4) != 0 || get32(l + 16) > 1) fail(": zip archives spanning several disks are not supported");
      if (e64 > eocd - kLocator64Bytes || eocd - kLocator64Bytes - e64 < kEnd64Bytes || get32(p_ + e64) != kEnd64Sig) {
        fail(" is corrupt: its zip64 end of central directory record is missing or misplaced");
      }
      const uint8_t* z = p_ + e64;
      disk = get32(z + 16);
      cd_disk = get32(z + 20);
      entries_disk = get64(z + 24);
      entries = get64(z + 32);
      cd_size = get64(z + 40);
      cd_offset = get64(z + 48);
      cd_end = e64;
    }
    if (disk != 0 || cd_disk != 0 || entries_disk != entries) {
      fail(": zip archives spanning several disks are not supported");
    }
    if (cd_offset > cd_end || cd_end - cd_offset != cd_size) {
      fail(" is corrupt: its central directory (" + std::to_string(cd_size) + " bytes at offset " +
           std::to_string(cd_offset) + ") does not end where the end record is (" + std::to_string(cd_end) + ")");
    }
    std::map<std::string, ZipMember> out;
    uint64_t pos = cd_offset;
    for (uint64_t k = 0; k < entries; ++k) {
      if (cd_end - pos < kCentralBytes || get32(p_ + pos) != kCentralSig) {
        fail(" is corrupt: central directory entry " + std::to_string(k) + " is damaged");
      }
      const uint8_t* c = p_ + pos;
      ZipMember m;
      m.flags = get16(c + 8);
      m.method = get16(c + 10);
      m.crc = get32(c + 16);
      m.csize = get32(c + 20);
      m.usize = get32(c + 24);
      const uint64_t name_len = get16(c + 28), extra_len = get16(c + 30), comment_len = get16(c + 32);
      const uint64_t start_disk = get16(c + 34);
      m.offset = get32(c + 42);
      if (cd_end - pos - kCentralBytes < name_len + extra_len + comment_len) {
        fail(" is corrupt: central directory entry " + std::to_string(k) + " runs past the directory");
      }
      m.fname.assign(reinterpret_cast<const char*>(c + kCentralBytes), name_len);
      // zip64 extra field: the 64-bit values of exactly the fields saturated above, in order.
      const uint8_t* x = c + kCentralBytes + name_len;
      const uint8_t* const x_end = x + extra_len;
      while (x_end - x >= 4) {
        const uint16_t id = get16(x), len = get16(x + 2);
        if (uint64_t(x_end - x - 4) < len) fail(" is corrupt: member " + quote(m.fname) + " has a damaged extra field");
        if (id == 1) {
          const uint8_t* f = x + 4;
          uint64_t left = len;
          auto take = [&](uint64_t* v) {
            if (left < 8) fail(" is corrupt: member " + quote(m.fname) + " has a short zip64 extra field");
            *v = get64(f);
            f += 8;
            left -= 8;
          };
          if (m.usize == kMax32) take(&m.usize);
          if (m.csize == kMax32) take(&m.csize);
          if (m.offset == kMax32) take(&m.offset);
        }
        x += 4 + len;
      }
      if (start_disk != 0 && start_disk != kMax16) fail(": zip archives spanning several disks are not supported");
      pos += kCentralBytes + name_len + extra_len + comment_len;
      check_member(&m);
      std::string name = m.fname.substr(0, m.fname.size() - (sizeof kSuffix - 1));
      if (out.count(name)) fail(": member " + quote(m.fname) + " appears twice in the archive");
      out.emplace(std::move(name), std::move(m));
    }
    if (pos != cd_end) fail(" is corrupt: its central directory holds more than its " + std::to_string(entries) + " entries");
    return out;
  }

  // A member's .npy header, checked for syntax (a broken one fails at once, as in Python).
  NpyHeader npy(const ZipMember& m) const {
    const uint8_t* d = m.data;
    const uint64_t n = m.usize;
    auto bad = [&](const std::string& why) {
      fail(": member " + quote(m.fname) + " has no valid .npy header: " + why);
    };
    if (n < 10 || std::memcmp(d, kNpyMagic, 6) != 0) bad("the magic string is not correct");
    const int major = d[6], minor = d[7];
    NpyHeader h;
    uint64_t hlen = 0, prefix = 0;
    if (major == 1 && minor == 0) {
      hlen = get16(d + 8);
      prefix = 10;
    } else if (major == 2 && minor == 0) {
      if (n < 12) bad("truncated");
      hlen = get32(d + 8);
      prefix = 12;
    } else {
      fail(": member " + quote(m.fname) + " is .npy format (" + std::to_string(major) + ", " + std::to_string(minor) +
           "); expected 1.0 or 2.0");
    }
    if (hlen > kMaxNpyHeaderBytes) {
      bad("header is " + std::to_string(hlen) + " bytes, more than the " + std::to_string(kMaxNpyHeaderBytes) +
          " allowed");
    }
    if (n - prefix < hlen) bad("EOF while reading the header");
    const std::string text(reinterpret_cast<const char*>(d + prefix), hlen);
    try {
      Literal(text).header(&h);
    } catch (const std::string& why) {
      bad(why);
    }
    h.data_offset = prefix + hlen;
    return h;
  }

 private:
  // The directory-level checks of graphc.checkpoint._members, then the local header.
  void check_member(ZipMember* m) const {
    const std::string q = quote(m->fname);
    const size_t sl = sizeof kSuffix - 1;
    if (m->fname.size() < sl || m->fname.compare(m->fname.size() - sl, sl, kSuffix) != 0) {
      fail(": member " + q + " is not a .npy array; a graphc checkpoint holds only .npy members");
    }
    if (m->method == 8) {
      fail(": member " + q + " is deflated; graphc's C runtime reads stored members only (numpy.savez and "
           "Session.save_checkpoint store, numpy.savez_compressed deflates)");
    }
    if (m->method != 0) {
      fail(": member " + q + " uses zip compression method " + std::to_string(m->method) +
           "; expected stored (0)");
    }
    if (m->flags & 0x1) fail(": member " + q + " is encrypted");
    if (m->csize != m->usize) {
      fail(": stored member " + q + " claims " + std::to_string(m->usize) + " bytes but occupies " +
           std::to_string(m->csize));
    }
    const uint64_t off = m->offset;
    if (off > n_ || n_ - off < kLocalBytes || get32(p_ + off) != kLocalSig) {
      fail(" is corrupt: member " + q + " has no local header at offset " + std::to_string(off));
    }
    const uint64_t name_len = get16(p_ + off + 26), extra_len = get16(p_ + off + 28);
    const uint64_t start = off + kLocalBytes + name_len + extra_len;
    if (start > n_ || n_ - start < m->csize) {
      fail(": member " + q + " claims " + std::to_string(m->csize) + " bytes at offset " + std::to_string(off) +
           ", beyond the end of the " + std::to_string(n_) + "-byte file");
    }
    if (std::string(reinterpret_cast<const char*>(p_ + off + kLocalBytes), name_len) != m->fname) {
      fail(" is corrupt: member " + q + " is named " +
           quote(reinterpret_cast<const char*>(p_ + off + kLocalBytes), name_len) + " in its local header");
    }
    m->data = p_ + start;
  }

  const uint8_t* p_;
  uint64_t n_;
  std::string where_;
};

// Copies count elements of `item` bytes from src (C or Fortran order, either byte order) to dst
// in C order and this machine's byte order.
void copy_elements(uint8_t* dst, const uint8_t* src, const std::vector<int64_t>& dims, uint64_t item, bool swap,
                   bool fortran) {
  uint64_t count = 1;
  for (int64_t d : dims) count *= uint64_t(d);
  if (count == 0) return;
  auto put = [&](uint64_t i, uint64_t j) {  // dst element i <- src element j
    if (swap) {
      for (uint64_t b = 0; b < item; ++b) dst[i * item + b] = src[j * item + item - 1 - b];
    } else {
      std::memcpy(dst + i * item, src + j * item, item);
    }
  };
  if (!fortran || dims.size() < 2) {
    if (!swap) {
      std::memcpy(dst, src, count * item);
    } else {
      for (uint64_t i = 0; i < count; ++i) put(i, i);
    }
    return;
  }
  // Walk dst in C order with an odometer; the Fortran index moves by the dims' column strides.
  const size_t nd = dims.size();
  std::vector<uint64_t> fstride(nd), idx(nd, 0);
  uint64_t s = 1;
  for (size_t k = 0; k < nd; ++k) {
    fstride[k] = s;
    s *= uint64_t(dims[k]);
  }
  uint64_t j = 0;
  for (uint64_t i = 0; i < count; ++i) {
    put(i, j);
    for (size_t k = nd; k-- > 0;) {
      if (++idx[k] < uint64_t(dims[k])) {
        j += fstride[k];
        break;
      }
      j -= fstride[k] * (uint64_t(dims[k]) - 1);
      idx[k] = 0;
    }
  }
}

}  // namespace

void read_npz_image(const void* data, size_t nbytes, const std::vector<NpzExpect>& expect,
                    const std::string& where) {
  if (data == nullptr && nbytes > 0) throw Error(kArgument, where + ": null data pointer");
  // The caller's side first: a wrong expectation is the program's error, not the file's.
  std::map<std::string, const NpzExpect*> plan;
  for (const NpzExpect& x : expect) {
    bool ok = false;
    const uint64_t count = element_count(x.dims, &ok);
    const uint64_t item = dtype_bytes(x.dtype);
    if (item == 0 || !ok || count > UINT64_MAX / item || count * item != x.nbytes) {
      throw Error(kArgument, where + ": expected tensor " + quote(x.name) + " (" + dtype_name(x.dtype) + " " +
                                 shape_text(x.dims.data(), int32_t(x.dims.size())) + ", " +
                                 std::to_string(x.nbytes) + " bytes) is inconsistent");
    }
    if (x.dst == nullptr && x.nbytes > 0) throw Error(kArgument, where + ": no destination for " + quote(x.name));
    if (x.name == kCheckpointMarker || !plan.emplace(x.name, &x).second) {
      throw Error(kArgument, where + ": expected tensor name " + quote(x.name) + " is reserved or repeated");
    }
  }

  Reader reader(static_cast<const uint8_t*>(data), nbytes, where);
  const std::map<std::string, ZipMember> members = reader.members();

  // The marker.
  const auto marker = members.find(kCheckpointMarker);
  if (marker == members.end()) {
    reader.fail(" is not a graphc checkpoint (no format marker '" + std::string(kCheckpointMarker) + "')");
  }
  {
    const ZipMember& m = marker->second;
    if (m.usize > kMaxMarkerBytes) {
      reader.fail(": the format marker claims " + std::to_string(m.usize) + " bytes; a marker is one integer");
    }
    const NpyHeader h = reader.npy(m);
    const Descr d = parse_descr(h.descr);
    if (!d.integer || !h.shape.empty()) {
      reader.fail(": malformed format marker: expected a 0-d integer, got dtype " +
                  (h.descr.empty() ? std::string("(structured)") : d.name) + " shape " +
                  shape_text(h.shape.data(), int32_t(h.shape.size())));
    }
    if (m.usize - h.data_offset < d.item) reader.fail(": malformed format marker: truncated");
    uint8_t raw[8] = {0};
    const uint8_t* src = m.data + h.data_offset;
    for (uint64_t b = 0; b < d.item; ++b) raw[b] = src[d.swap ? d.item - 1 - b : b];
    int64_t version = 0;
    if (little_endian_host()) {
      uint64_t u = 0;
      for (uint64_t b = 0; b < d.item; ++b) u |= uint64_t(raw[b]) << (8 * b);
      if (d.is_signed && d.item < 8 && (u >> (8 * d.item - 1)) & 1) u |= ~uint64_t(0) << (8 * d.item);
      version = int64_t(u);
    } else {
      uint64_t u = 0;
      for (uint64_t b = 0; b < d.item; ++b) u = (u << 8) | raw[b];
      if (d.is_signed && d.item < 8 && (u >> (8 * d.item - 1)) & 1) u |= ~uint64_t(0) << (8 * d.item);
      version = int64_t(u);
    }
    if (!d.is_signed && d.item == 8 && version < 0) version = INT64_MAX;  // a huge unsigned value
    if (version > kCheckpointVersion) {
      reader.fail(" has checkpoint version " + std::to_string(version) + "; this graphc reads up to " +
                  std::to_string(kCheckpointVersion));
    }
    if (version < 1) {
      reader.fail(": malformed format marker: version " + std::to_string(version) + ", expected 1 to " +
                  std::to_string(kCheckpointVersion));
    }
  }

  // The names: exactly the expected ones.
  std::vector<std::string> problems;
  for (const auto& kv : plan) {
    if (!members.count(kv.first)) problems.push_back("missing variable " + quote(kv.first));
  }
  for (const auto& kv : members) {
    if (kv.first != kCheckpointMarker && !plan.count(kv.first)) {
      problems.push_back("unexpected variable " + quote(kv.first));
    }
  }
  if (!problems.empty()) reader.fail(" does not match the plan: " + joined(problems));

  // Every header against its expectation, before any data is looked at.
  struct Ready {
    const NpzExpect* x;
    const uint8_t* src;
    Descr d;
    bool fortran;
  };
  std::vector<Ready> ready;
  for (const auto& kv : plan) {
    const NpzExpect& x = *kv.second;
    const ZipMember& m = members.at(kv.first);
    const std::string q = quote(x.name);
    const std::string want = std::string(dtype_name(x.dtype)) + " " + shape_text(x.dims.data(), int32_t(x.dims.size()));
    if (m.usize > x.nbytes + kMaxNpyHeaderBytes + 16) {
      problems.push_back("variable " + q + ": the member claims " + std::to_string(m.usize) +
                         " bytes uncompressed, the plan's " + want + " needs " + std::to_string(x.nbytes) +
                         " plus a header");
      continue;
    }
    const NpyHeader h = reader.npy(m);
    const Descr d = parse_descr(h.descr);
    if (d.object) {
      problems.push_back("variable " + q + " holds Python objects (dtype " + quote(h.descr) +
                         "); graphc never unpickles checkpoint data");
      continue;
    }
    if (d.dtype != x.dtype || h.shape != x.dims) {
      problems.push_back("variable " + q + ": the plan has " + want + ", the checkpoint " +
                         (h.descr.empty() ? std::string("a structured dtype") : d.name) + " " +
                         shape_text(h.shape.data(), int32_t(h.shape.size())));
      continue;
    }
    if (m.usize != h.data_offset + x.nbytes) {
      problems.push_back("variable " + q + ": the member holds " + std::to_string(m.usize - h.data_offset) +
                         " data bytes, " + want + " needs " + std::to_string(x.nbytes));
      continue;
    }
    ready.push_back(Ready{&x, m.data + h.data_offset, d, h.fortran});
  }
  if (!problems.empty()) reader.fail(" does not match the plan: " + joined(problems));

  // The data: every member's CRC-32 (the marker's too) and the bool bytes.
  for (const auto& kv : members) {
    const ZipMember& m = kv.second;
    if (crc32(0, m.data, size_t(m.usize)) != m.crc) {
      reader.fail(" is corrupt or truncated: Bad CRC-32 for file " + quote(m.fname));
    }
  }
  for (const Ready& r : ready) {
    if (r.x->dtype != 5) continue;
    for (uint64_t i = 0; i < r.x->nbytes; ++i) {
      if (r.src[i] > 1) {
        reader.fail(": bool variable " + quote(r.x->name) + " holds bytes other than 0 and 1");
      }
    }
  }

  // Every check passed: now, and only now, the destinations.
  for (const Ready& r : ready) {
    copy_elements(static_cast<uint8_t*>(r.x->dst), r.src, r.x->dims, dtype_bytes(r.x->dtype), r.d.swap, r.fortran);
  }
}

void read_npz(const std::string& path, const std::vector<NpzExpect>& expect) {
  const std::string where = "checkpoint " + quote(path);
  // O_NONBLOCK: opening a FIFO blocks until a writer comes, before the check below could refuse
  // it (no effect on a regular file's reads; cleared anyway once it is known to be one).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) throw Error(kIo, where + " does not exist");
    throw Error(kIo, io_error(where + " cannot be opened"));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(kIo, io_error(where + " cannot be read"));
  // a folder, a FIFO (reading it could block forever) or a device
  if (!S_ISREG(st.st_mode)) throw Error(kIo, where + " is not a regular file");
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl == -1 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) throw Error(kIo, io_error(where + " cannot be read"));
  const uint64_t size = uint64_t(st.st_size);
  // A checkpoint of these tensors cannot be larger than their bytes plus, per member, a .npy
  // header and the zip records (names, extra fields and comments of at most 64 KiB each): a
  // larger file is refused before it is read into memory.
  constexpr uint64_t kPerMember = kMaxNpyHeaderBytes + 16 + 30 + 46 + 24 + 5 * 65535;
  uint64_t limit = kMaxMarkerBytes + kPerMember + kEndBytes + kEnd64Bytes + kLocator64Bytes + 65535;
  for (const NpzExpect& x : expect) limit += x.nbytes + kPerMember;
  if (size > limit) {
    throw Error(kCheckpoint, where + " is " + std::to_string(size) + " bytes, more than a checkpoint of these " +
                                 std::to_string(expect.size()) + " variables can be (" + std::to_string(limit) + ")");
  }
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(size_t(size));
  } catch (const std::bad_alloc&) {
    throw Error(kNoMemory, where + ": no memory to read its " + std::to_string(size) + " bytes");
  }
  uint64_t got = 0;
  while (got < size) {
    const size_t chunk = size - got > (1u << 30) ? (1u << 30) : size_t(size - got);
    const ssize_t r = ::read(fd, bytes.data() + got, chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(kIo, io_error(where + " cannot be read"));
    if (r == 0) throw Error(kIo, where + " shrank while it was read");
    got += uint64_t(r);
  }
  read_npz_image(bytes.data(), bytes.size(), expect, where);
}

}  // namespace aot
}  // namespace graphc
