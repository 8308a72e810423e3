#include "pipelines/loop_inputs/added_conditions.h"

namespace nd {

AddedConditions AddedConditions::text_time() {
  AddedConditions a;
  a.text_embeds_ = "add_text_embeds";
  a.time_ids_ = "add_time_ids";
  return a;
}

AddedConditions AddedConditions::image() {
  AddedConditions a;
  a.image_embeds_ = "image_embeds";
  return a;
}

AddedConditions AddedConditions::class_labels(at::Tensor labels) {
  AddedConditions a;
  a.class_labels_ = std::move(labels);
  return a;
}

void AddedConditions::add_to(UNetInputs& call, const LoopStep& step) const {
  const auto tensor = [&](const std::string& name) { return name.empty() ? at::Tensor() : step.tensors.at(name); };
  if (!text_embeds_.empty()) call.added.text_embeds = tensor(text_embeds_);
  if (!time_ids_.empty()) call.added.time_ids = tensor(time_ids_);
  if (!image_embeds_.empty()) call.added.image_embeds = tensor(image_embeds_);
  if (class_labels_.defined()) call.added.class_labels = class_labels_;
}

}  // namespace nd
