// diffusers' added_cond_kwargs and class_labels of the UNet call: SDXL's pooled text embeddings and
// micro-conditioning time ids, Kandinsky 2.2's image embeddings (read from the step tensors, which a
// callback may replace), the x4 upscaler's noise level as class labels (fixed for the call).
#pragma once

#include <string>

#include "pipelines/loop_inputs/loop_input.h"

namespace nd {

class AddedConditions : public LoopInput {
 public:
  // SDXL: the step tensors "add_text_embeds" and "add_time_ids".
  static AddedConditions text_time();
  // Kandinsky 2.2: the step tensor "image_embeds".
  static AddedConditions image();
  // The x4 upscaler: the noise level of every image in the model batch.
  static AddedConditions class_labels(at::Tensor labels);

  void add_to(UNetInputs& call, const LoopStep& step) const override;

 private:
  std::string text_embeds_, time_ids_, image_embeds_;  // step tensor names; empty: absent
  at::Tensor class_labels_;
};

}  // namespace nd
