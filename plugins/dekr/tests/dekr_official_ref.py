"""A torch transcription of the official DEKR post-processing (HRNet/DEKR@7a30313,
lib/core/inference.py, lib/core/nms.py, lib/utils/transforms.py, lib/utils/rescore.py; MIT),
used as an oracle for the paths the recorded fixture does not cover (multi-scale testing).
Kept as close to the original as possible; numpy >= 1.24 fixes only (no np.float)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

FLIP_COCO = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
FLIP_COCO_WITH_CENTER = FLIP_COCO + [17]


class Cfg:
    INPUT_SIZE = 512
    OUTPUT_SIZE = 128
    MAX_NUM_PEOPLE = 30
    KEYPOINT_THRESHOLD = 0.01
    POOL_THRESHOLD1 = 300
    POOL_THRESHOLD2 = 200
    NMS_THRE = 0.05
    NMS_NUM_THRE = 8
    DECREASE = 0.9

    def __init__(self, scale_factor):
        self.SCALE_FACTOR = list(scale_factor)


def get_locations(output_h, output_w):
    shifts_x = torch.arange(0, output_w, step=1, dtype=torch.float32)
    shifts_y = torch.arange(0, output_h, step=1, dtype=torch.float32)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    return torch.stack((shift_x.reshape(-1), shift_y.reshape(-1)), dim=1)


def get_reg_poses(offset, num_joints):
    _, h, w = offset.shape
    offset = offset.permute(1, 2, 0).reshape(h * w, num_joints, 2)
    locations = get_locations(h, w)[:, None, :].expand(-1, num_joints, -1)
    return locations - offset


def offset_to_pose(offset, flip=True, flip_index=None):
    num_offset, h, w = offset.shape[1:]
    num_joints = int(num_offset / 2)
    reg_poses = get_reg_poses(offset[0], num_joints)
    if flip:
        reg_poses = reg_poses[:, flip_index, :]
        reg_poses[:, :, 0] = w - reg_poses[:, :, 0] - 1
    reg_poses = reg_poses.contiguous().view(h * w, 2 * num_joints).permute(1, 0)
    return reg_poses.contiguous().view(1, -1, h, w).contiguous()


def multi_stage_outputs(heatmap, offset, heatmap_flip=None, offset_flip=None):
    """get_multi_stage_outputs with the model calls replaced by the given outputs."""
    posemap = offset_to_pose(offset, flip=False)
    if heatmap_flip is not None:
        heatmap_flip = torch.flip(heatmap_flip, [3])
        heatmap = (heatmap + heatmap_flip[:, FLIP_COCO_WITH_CENTER, :, :]) / 2.0
        posemap_flip = offset_to_pose(offset_flip, flip_index=FLIP_COCO)
        posemap = (posemap + torch.flip(posemap_flip, [3])) / 2.0
    return heatmap, posemap


def up_interpolate(x, size):
    H, W = x.size()[2], x.size()[3]
    scale_h, scale_w = int(size[0] / H), int(size[1] / W)
    inter_x = torch.nn.functional.interpolate(x, size=[size[0] - scale_h + 1, size[1] - scale_w + 1],
                                              align_corners=True, mode="bilinear")
    return torch.nn.ReplicationPad2d((0, scale_w - 1, 0, scale_h - 1))(inter_x)


def hierarchical_pool(cfg, heatmap):
    map_size = (heatmap.shape[1] + heatmap.shape[2]) / 2.0
    if map_size > cfg.POOL_THRESHOLD1:
        return torch.nn.MaxPool2d(7, 1, 3)(heatmap[None])
    if map_size > cfg.POOL_THRESHOLD2:
        return torch.nn.MaxPool2d(5, 1, 2)(heatmap[None])
    return torch.nn.MaxPool2d(3, 1, 1)(heatmap[None])


def get_maximum_from_heatmap(cfg, heatmap):
    maxm = torch.eq(hierarchical_pool(cfg, heatmap), heatmap).float()
    scores = (heatmap * maxm).view(-1)
    scores, pos_ind = scores.topk(cfg.MAX_NUM_PEOPLE)
    select_ind = (scores > cfg.KEYPOINT_THRESHOLD).nonzero()
    return pos_ind[select_ind][:, 0], scores[select_ind][:, 0]


def aggregate_results(cfg, heatmap_sum, poses, heatmap, posemap, scale):
    reverse_scale = cfg.INPUT_SIZE * 1.0 / cfg.OUTPUT_SIZE / scale
    h, w = heatmap[0].size(-1), heatmap[0].size(-2)
    heatmap_sum += up_interpolate(heatmap, size=(int(reverse_scale * w), int(reverse_scale * h)))
    pose_ind, ctr_score = get_maximum_from_heatmap(cfg, heatmap[0, -1:])
    posemap = posemap[0].permute(1, 2, 0).view(h * w, -1, 2)
    pose = reverse_scale * posemap[pose_ind]
    ctr_score = ctr_score[:, None].expand(-1, pose.shape[-2])[:, :, None]
    poses.append(torch.cat([pose, ctr_score], dim=2))
    return heatmap_sum, poses


def get_heat_value(pose_coord, heatmap):
    _, h, w = heatmap.shape
    heatmap_nocenter = heatmap[:-1].flatten(1, 2).transpose(0, 1)
    y_b = torch.clamp(torch.floor(pose_coord[:, :, 1]), 0, h - 1).long()
    x_l = torch.clamp(torch.floor(pose_coord[:, :, 0]), 0, w - 1).long()
    return torch.gather(heatmap_nocenter, 0, y_b * w + x_l).unsqueeze(-1)


def cal_area_2_torch(v):
    w = torch.max(v[:, :, 0], -1)[0] - torch.min(v[:, :, 0], -1)[0]
    h = torch.max(v[:, :, 1], -1)[0] - torch.min(v[:, :, 1], -1)[0]
    return w * w + h * h


def nms_core(cfg, pose_coord, heat_score):
    num_people, num_joints, _ = pose_coord.shape
    pose_area = cal_area_2_torch(pose_coord)[:, None].repeat(1, num_people * num_joints)
    pose_area = pose_area.reshape(num_people, num_people, num_joints)
    pose_diff = pose_coord[:, None, :, :] - pose_coord
    pose_diff.pow_(2)
    pose_dist = pose_diff.sum(3)
    pose_dist.sqrt_()
    pose_thre = cfg.NMS_THRE * torch.sqrt(pose_area)
    pose_dist = (pose_dist < pose_thre).sum(2)
    nms_pose = pose_dist > cfg.NMS_NUM_THRE
    ignored_pose_inds, keep_pose_inds = [], []
    for i in range(nms_pose.shape[0]):
        if i in ignored_pose_inds:
            continue
        keep_inds = [int(k) for k in nms_pose[i].nonzero()[:, 0]]
        ind = torch.argmax(heat_score[keep_inds])
        keep_ind = keep_inds[ind]
        if keep_ind in ignored_pose_inds:
            continue
        keep_pose_inds += [keep_ind]
        ignored_pose_inds += list(set(keep_inds) - set(ignored_pose_inds))
    return keep_pose_inds


def pose_nms(cfg, heatmap_avg, poses):
    scale1_index = sorted(cfg.SCALE_FACTOR, reverse=True).index(1.0)
    pose_norm = poses[scale1_index]
    max_score = pose_norm[:, :, 2].max() if pose_norm.shape[0] else 1
    for i, pose in enumerate(poses):
        if i != scale1_index:
            max_score_scale = pose[:, :, 2].max() if pose.shape[0] else 1
            pose[:, :, 2] = pose[:, :, 2] / max_score_scale * max_score * cfg.DECREASE
    pose_score = torch.cat([pose[:, :, 2:] for pose in poses], dim=0)
    pose_coord = torch.cat([pose[:, :, :2] for pose in poses], dim=0)
    if pose_coord.shape[0] == 0:
        return [], []
    num_people, num_joints, _ = pose_coord.shape
    heatval = get_heat_value(pose_coord, heatmap_avg[0])
    heat_score = (torch.sum(heatval, dim=1) / num_joints)[:, 0]
    pose_score = pose_score * heatval
    poses = torch.cat([pose_coord.cpu(), pose_score.cpu()], dim=2)
    keep_pose_inds = nms_core(cfg, pose_coord, heat_score)
    poses = poses[keep_pose_inds]
    heat_score = heat_score[keep_pose_inds]
    if len(keep_pose_inds) > cfg.MAX_NUM_PEOPLE:
        heat_score, topk_inds = torch.topk(heat_score, cfg.MAX_NUM_PEOPLE)
        poses = poses[topk_inds]
    poses = [poses.numpy()]
    scores = [i[:, 2].mean() for i in poses[0]]
    return poses, scores


def get_3rd_point(a, b):
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def get_affine_transform(center, scale, output_size, inv=0):
    scale_tmp = scale * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size[0], output_size[1]
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + np.array([0, src_w * -0.5])
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0, dst_w * -0.5], np.float32)
    src[2:, :] = get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = get_3rd_point(dst[0, :], dst[1, :])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def get_final_preds(grouped_joints, center, scale, heatmap_size):
    out = []
    trans = get_affine_transform(center, scale, heatmap_size, inv=1)
    for person in grouped_joints[0]:
        target = person.copy()
        for p in range(person.shape[0]):
            target[p, 0:2] = np.dot(trans, np.array([person[p, 0], person[p, 1], 1.0]))[:2]
        out.append(target)
    return out


def run_valid(scale_outputs, center, scale_resized, base_size, scales):
    """The valid.py loop body after the network: ``scale_outputs[s] = (hm, off, hm_f, off_f)``
    as (1, C, h, w) tensors; returns (proposals per scale, poses, scores, final poses)."""
    cfg = Cfg(scales)
    heatmap_sum, poses = 0, []
    with torch.no_grad():
        for s in sorted(scales, reverse=True):
            heatmap, posemap = multi_stage_outputs(*scale_outputs[s])
            heatmap_sum, poses = aggregate_results(cfg, heatmap_sum, poses, heatmap, posemap, s)
        proposals = [p.clone().numpy() for p in poses]
        heatmap_avg = heatmap_sum / len(scales)
        nms_poses, scores = pose_nms(cfg, heatmap_avg, poses)
    final = get_final_preds(nms_poses, center, scale_resized, base_size) if len(scores) else []
    return proposals, nms_poses, scores, final
