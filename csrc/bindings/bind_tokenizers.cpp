// Binds nd::CLIPTokenizer as the low-level _C.CLIPTokenizer; the transformers-shaped surface
// (BatchEncoding, return_tensors, from_pretrained) lives in models/clip/tokenization_clip.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "core/errors.h"
#include "tokenizers/clip_tokenizer.h"

namespace py = pybind11;

namespace nd::bindings {

namespace {

// transformers accepts padding=False/True or a strategy name.
PaddingStrategy to_padding(const py::object& padding) {
  if (padding.is_none()) return PaddingStrategy::kDoNotPad;
  if (py::isinstance<py::bool_>(padding)) {
    return padding.cast<bool>() ? PaddingStrategy::kLongest : PaddingStrategy::kDoNotPad;
  }
  if (py::isinstance<py::str>(padding)) {
    const std::string s = padding.cast<std::string>();
    if (s == "do_not_pad") return PaddingStrategy::kDoNotPad;
    if (s == "longest") return PaddingStrategy::kLongest;
    if (s == "max_length") return PaddingStrategy::kMaxLength;
    throw ValueError("'" + s +
                     "' is not a valid PaddingStrategy, please select one of ['longest', "
                     "'max_length', 'do_not_pad']");
  }
  throw TypeError("padding must be a bool or one of 'longest', 'max_length', 'do_not_pad'");
}

// truncation=None keeps transformers' "implied by max_length" rule; strategy names other than
// "do_not_truncate" all mean "truncate" for a single sequence.
std::optional<bool> to_truncation(const py::object& truncation) {
  if (truncation.is_none()) return std::nullopt;
  if (py::isinstance<py::bool_>(truncation)) return truncation.cast<bool>();
  if (py::isinstance<py::str>(truncation)) {
    const std::string s = truncation.cast<std::string>();
    if (s == "do_not_truncate") return false;
    if (s == "longest_first" || s == "only_first" || s == "only_second") return true;
    throw ValueError("'" + s +
                     "' is not a valid TruncationStrategy, please select one of ['only_first', "
                     "'only_second', 'longest_first', 'do_not_truncate']");
  }
  throw TypeError("truncation must be a bool or a truncation strategy name");
}

}  // namespace

void bind_tokenizers(py::module_& m) {
  py::class_<CLIPTokenizer, std::shared_ptr<CLIPTokenizer>>(m, "CLIPTokenizer")
      .def_static("from_folder", &CLIPTokenizer::from_folder, py::arg("path"),
                  py::call_guard<py::gil_scoped_release>())
      .def(py::init([](const CLIPTokenizer::Vocab& vocab,
                       const std::vector<std::pair<std::string, std::string>>& merges,
                       std::optional<int64_t> model_max_length, const std::string& bos_token,
                       const std::string& eos_token, const std::string& unk_token,
                       const std::string& pad_token) {
             CLIPSpecialTokens specials;
             specials.bos_token = AddedToken{bos_token};
             specials.eos_token = AddedToken{eos_token};
             specials.unk_token = AddedToken{unk_token};
             specials.pad_token = AddedToken{pad_token};
             return CLIPTokenizer(vocab, merges, specials, model_max_length);
           }),
           py::arg("vocab"), py::arg("merges"), py::arg("model_max_length") = 77,
           py::arg("bos_token") = "<|startoftext|>", py::arg("eos_token") = "<|endoftext|>",
           py::arg("unk_token") = "<|endoftext|>", py::arg("pad_token") = "<|endoftext|>")
      .def("encode", &CLIPTokenizer::encode, py::arg("text"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "__call__",
          [](const CLIPTokenizer& self, const std::vector<std::string>& texts,
             const py::object& padding, const py::object& truncation,
             std::optional<int64_t> max_length, bool add_special_tokens) {
            const PaddingStrategy p = to_padding(padding);
            const std::optional<bool> t = to_truncation(truncation);
            CLIPBatchEncoding enc;
            {
              py::gil_scoped_release release;
              enc = self(texts, p, t, max_length, add_special_tokens);
            }
            return py::make_tuple(py::cast(enc.input_ids), py::cast(enc.attention_mask));
          },
          py::arg("texts"), py::arg("padding") = false, py::arg("truncation") = py::none(),
          py::arg("max_length") = py::none(), py::arg("add_special_tokens") = true,
          "Returns (input_ids, attention_mask) as lists of lists.")
      .def("decode", &CLIPTokenizer::decode, py::arg("token_ids"),
           py::arg("skip_special_tokens") = false)
      .def("token_to_id", &CLIPTokenizer::token_to_id, py::arg("token"))
      .def("id_to_token", &CLIPTokenizer::id_to_token, py::arg("id"))
      .def_property("model_max_length", &CLIPTokenizer::model_max_length,
                    &CLIPTokenizer::set_model_max_length)
      .def_property_readonly("bos_token_id", &CLIPTokenizer::bos_token_id)
      .def_property_readonly("eos_token_id", &CLIPTokenizer::eos_token_id)
      .def_property_readonly("pad_token_id", &CLIPTokenizer::pad_token_id)
      .def_property_readonly("unk_token_id", &CLIPTokenizer::unk_token_id)
      .def_property_readonly("bos_token",
                             [](const CLIPTokenizer& t) -> std::optional<std::string> {
                               const auto& s = t.special_tokens().bos_token;
                               return s ? std::optional<std::string>(s->content) : std::nullopt;
                             })
      .def_property_readonly("eos_token",
                             [](const CLIPTokenizer& t) -> std::optional<std::string> {
                               const auto& s = t.special_tokens().eos_token;
                               return s ? std::optional<std::string>(s->content) : std::nullopt;
                             })
      .def_property_readonly("unk_token",
                             [](const CLIPTokenizer& t) -> std::optional<std::string> {
                               const auto& s = t.special_tokens().unk_token;
                               return s ? std::optional<std::string>(s->content) : std::nullopt;
                             })
      .def_property_readonly("pad_token",
                             [](const CLIPTokenizer& t) -> std::optional<std::string> {
                               const auto& s = t.special_tokens().pad_token;
                               return s ? std::optional<std::string>(s->content) : std::nullopt;
                             })
      .def_property_readonly("vocab_size", &CLIPTokenizer::vocab_size)
      .def_property_readonly("padding_side", &CLIPTokenizer::padding_side)
      .def_property_readonly("truncation_side", &CLIPTokenizer::truncation_side)
      .def("__len__", &CLIPTokenizer::size);
}

}  // namespace nd::bindings
