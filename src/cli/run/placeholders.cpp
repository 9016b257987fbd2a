// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/placeholders.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

namespace polymap::cli::run {

namespace {

constexpr std::string_view known =
    "{} {.} {/} {//} {/.} {#} {%} and {N} {N.} {N/} {N//} {N/.} for column N";

/// Text between braces that is made only of the characters placeholders use is meant as
/// one, so a typo such as {..} or {0} is an error; anything else ({print $1} in an awk
/// script, ${HOME}) is literal text.
bool looks_like_placeholder(std::string_view inside) {
  return inside.find_first_not_of("0123456789./#%+=-") == std::string_view::npos;
}

std::string_view base_name(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

/// Perl's File::Basename::dirname, which GNU parallel's {//} is, and POSIX dirname but for
/// "//", which is "/": trailing slashes are not a path's last part ("a/b/" is in "a"), and
/// the slashes between the directory and that part go with it ("a//b" is in "a").
std::string_view dir_name(std::string_view path) {
  std::size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;
  const std::size_t slash = path.substr(0, end).rfind('/');
  if (slash == std::string_view::npos) return ".";
  end = slash;
  while (end > 0 && path[end - 1] == '/') --end;
  return end == 0 ? path.substr(0, 1) : path.substr(0, end);
}

std::string_view without_ext(std::string_view path) {
  const std::size_t dot = path.rfind('.');
  const std::size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return path;
  }
  return path.substr(0, dot);
}

}  // namespace

std::string display_command(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& word : argv) {
    if (!line.empty()) line += ' ';
    line += shell_quote(word);
  }
  return line;
}

command_template::command_template(const std::vector<std::string>& words, std::size_t columns,
                                   bool shell)
    : shell_(shell) {
  bool any = false;
  for (const std::string& text : words) {
    identity_ += text;
    identity_ += '\0';
    word w;
    std::size_t at = 0;    // start of the text not yet in `w`
    std::size_t scan = 0;  // where to look for the next placeholder
    while (at < text.size()) {
      // A placeholder is a `{`, the text up to the next brace, and a `}`: braces around it
      // (`BEGIN{print "{}"}`) are text, and so is any brace pair that does not look like
      // one (`${HOME}`, `{print $1}`).
      std::size_t open = text.find('{', scan);
      std::size_t close = open;
      while (open != std::string::npos) {
        close = text.find_first_of("{}", open + 1);
        if (close == std::string::npos || text[close] == '}') break;
        open = close;  // a `{` before any `}`: the inner one may open a placeholder
      }
      if (open == std::string::npos || close == std::string::npos) {
        if (at < text.size()) w.push_back({kind::text, transform::none, 0, text.substr(at), {}});
        break;
      }
      const std::string_view inside = std::string_view(text).substr(open + 1, close - open - 1);
      if (!looks_like_placeholder(inside)) {
        scan = close + 1;  // text: it stays in the run of text that starts at `at`
        continue;
      }
      if (open > at) w.push_back({kind::text, transform::none, 0, text.substr(at, open - at), {}});
      piece p;
      p.text = text.substr(open, close - open + 1);
      std::size_t digits = 0;
      while (digits < inside.size() && inside[digits] >= '0' && inside[digits] <= '9') ++digits;
      const std::string_view rest = inside.substr(digits);
      bool ok = true;
      if (digits == 0 && rest == "#") {
        p.what = kind::seq;
      } else if (digits == 0 && rest == "%") {
        p.what = kind::slot;
      } else {
        p.what = digits == 0 ? kind::all : kind::column;
        if (rest.empty()) {
          p.how = transform::none;
        } else if (rest == ".") {
          p.how = transform::no_ext;
        } else if (rest == "/") {
          p.how = transform::base;
        } else if (rest == "//") {
          p.how = transform::dir;
        } else if (rest == "/.") {
          p.how = transform::base_no_ext;
        } else {
          ok = false;
        }
        if (digits > 0 && ok) {
          const std::string_view number = inside.substr(0, digits);
          const auto [end, error] =
              std::from_chars(number.data(), number.data() + number.size(), p.column);
          if (error != std::errc() || end != number.data() + number.size() || p.column == 0 ||
              p.column > columns) {
            throw std::runtime_error("placeholder {" + std::string(inside) + "} in '" + text +
                                     "' names column " + std::string(number) + ", but there " +
                                     (columns == 1
                                          ? "is 1 input source"
                                          : "are " + std::to_string(columns) + " input sources"));
          }
        }
      }
      if (!ok || (digits > 0 && (p.what == kind::seq || p.what == kind::slot))) {
        throw std::runtime_error("unknown placeholder {" + std::string(inside) + "} in '" + text +
                                 "'; known: " + std::string(known));
      }
      w.push_back(p);
      any = true;
      at = scan = close + 1;
    }
    words_.push_back(std::move(w));
  }
  if (!any) {
    // GNU parallel's rule: no placeholder means the arguments go at the end.
    for (std::size_t c = 1; c <= columns; ++c) {
      std::string name = "{";  // appended, not "{" + ...: GCC 12 warns a false -Wrestrict
      name += std::to_string(c);
      name += '}';
      words_.push_back({piece{kind::column, transform::none, c, std::move(name), {}}});
    }
  }
  if (shell_) {
    // Where each placeholder stands in the line that sh -c reads: the words joined by spaces.
    shell_scanner line;
    const piece* first = nullptr;
    for (std::size_t i = 0; i < words_.size(); ++i) {
      if (i > 0) line.read(" ");
      for (piece& p : words_[i]) {
        if (p.what == kind::text) {
          line.read(p.text);
          continue;
        }
        p.where = line.here(p.text);
        if (first == nullptr) first = &p;
        // Placeholders that give the same value share its variable (and its argument).
        const auto same = std::find_if(variables_.begin(), variables_.end(), [&](const piece& v) {
          return v.what == p.what && v.how == p.how && v.column == p.column;
        });
        if (same == variables_.end()) {
          variables_.push_back(p);
          p.variable = variables_.size();
        } else {
          p.variable = static_cast<std::size_t>(same - variables_.begin()) + 1;
        }
      }
    }
    if (first != nullptr) line.finish(first->text);
  }
}

std::string command_template::shell_variable(std::size_t i) {
  return "__polymap_" + std::to_string(i);
}

std::string command_template::value(const piece& p, const std::vector<std::string>& item,
                                    std::size_t seq, std::size_t slot) const {
  const auto transformed = [&p](std::string_view raw) -> std::string_view {
    switch (p.how) {
      case transform::none: return raw;
      case transform::no_ext: return without_ext(raw);
      case transform::base: return base_name(raw);
      case transform::dir: return dir_name(raw);
      case transform::base_no_ext: return without_ext(base_name(raw));
    }
    return raw;
  };
  switch (p.what) {
    case kind::text:
      return p.text;
    case kind::seq:
      return std::to_string(seq);
    case kind::slot:
      return std::to_string(slot);
    case kind::column:
      return std::string(transformed(item[p.column - 1]));
    case kind::all: {
      // Each column transformed, then joined, as GNU parallel does ({/} of d1/a ::: d2/b
      // is "a b").
      std::string joined;
      for (std::size_t c = 0; c < item.size(); ++c) {
        if (c > 0) joined += ' ';
        joined += transformed(item[c]);
      }
      return joined;
    }
  }
  return {};
}

std::vector<std::string> command_template::expand(const std::vector<std::string>& item,
                                                  std::size_t seq, std::size_t slot) const {
  std::vector<std::string> argv;
  argv.reserve(words_.size());
  std::string line;  // --shell: one command line for sh -c
  for (const word& w : words_) {
    std::string out;
    for (const piece& p : w) {
      if (shell_ && p.what != kind::text) {
        // The template is shell code the user wrote, the input is data: the line refers
        // to a variable that holds the value, which the shell never reads as code.
        out += reference_for(p.where, shell_variable(p.variable));
      } else {
        out += value(p, item, seq, slot);
      }
    }
    if (shell_) {
      if (!line.empty()) line += ' ';
      line += out;
    } else {
      argv.push_back(std::move(out));
    }
  }
  if (!shell_) return argv;
  // sh -c 'polymap_1=${1}; ...; shift N; LINE' sh VALUE...: the values come in as
  // arguments, and the line sees none (as it would without placeholders).
  std::string script;
  for (std::size_t i = 1; i <= variables_.size(); ++i) {
    script += shell_variable(i) + "=${" + std::to_string(i) + "}; ";
  }
  if (!variables_.empty()) script += "shift " + std::to_string(variables_.size()) + "; ";
  script += line;
  argv = {"/bin/sh", "-c", std::move(script), "sh"};
  for (const piece& v : variables_) argv.push_back(value(v, item, seq, slot));
  return argv;
}

}  // namespace polymap::cli::run
