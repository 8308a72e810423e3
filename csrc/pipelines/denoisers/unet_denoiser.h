// The UNet as the loop's denoiser: the step's model input, its encoder states and whatever the
// pipeline's loop inputs add, in one UNet2DConditionModel call. Cross-attention keys and values
// are projected once per prompt (project_encoder_states) and again after each step callback,
// which may have edited the prompt embeddings in place.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/unets/unet_2d_condition.h"
#include "pipelines/denoising_loop.h"
#include "pipelines/loop_inputs/loop_input.h"

namespace nd {

class UNetDenoiser : public Denoiser {
 public:
  // `encoder_states`: the step tensor that holds the encoder hidden states ("prompt_embeds"), or
  // empty for a UNet that attends to image embeddings instead (Kandinsky 2.2).
  UNetDenoiser(const UNet2DConditionModel& unet, std::string encoder_states,
               std::vector<const LoopInput*> inputs = {});
  at::Tensor operator()(const LoopStep& step) override;
  void after_step_callback() override { projected_.reset(); }

 private:
  // Null while blocks stream in (sequential offload): projecting ahead would bring in every
  // transformer block once more per call, for two small GEMMs each.
  const EncoderKeyValues* projections_for(const UNetInputs& call);

  const UNet2DConditionModel& unet_;
  std::string encoder_states_;
  std::vector<const LoopInput*> inputs_;
  std::optional<EncoderKeyValues> projected_;
  at::Tensor projected_states_, projected_image_embeds_;  // what projected_ was projected from
};

}  // namespace nd
